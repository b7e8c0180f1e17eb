// Package atomicfile puts files into place atomically: the data goes to a temporary file in
// the target's directory, is synced, renamed over the target, and the directory is synced,
// so that a reader (or a machine that crashes) sees either the previous file or the whole
// new one, never a part. On any error the temporary file is removed and the previous file
// stays. PutDir does the same for a directory built under a temporary name, MoveInto moves a
// finished directory's entries into another one, and Rename is a rename whose result survives
// a crash; the module renames files and directories into place through this package only.
// It imports nothing of this module, so every package can use it.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile writes data to path atomically, with permissions perm (set exactly, not
// through the umask).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Write puts the bytes that fill writes into place at path atomically, with permissions
// perm (set exactly, not through the umask). When fill returns an error nothing changes at
// path and that error is returned.
func Write(path string, perm os.FileMode, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return DiskFull(path, err)
	}
	name := f.Name()
	err = fill(f)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return DiskFull(path, err)
	}
	return DiskFull(path, SyncDir(dir))
}

// WriteVia is Write for writers that take a file name rather than an io.Writer (LibTorch's
// save functions): write is given the name of an empty temporary file beside path and writes
// it by that name; then the file gets permissions perm, is synced and renamed into place and
// the directory is synced. When write returns an error nothing changes at path, the temporary
// file is removed and that error is returned.
func WriteVia(path string, perm os.FileMode, write func(tmp string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return DiskFull(path, err)
	}
	name := f.Name()
	err = f.Close()
	if err == nil {
		err = write(name)
	}
	if err == nil {
		err = syncFile(name, perm)
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return DiskFull(path, err)
	}
	return DiskFull(path, SyncDir(dir))
}

// syncFile sets name's permissions to perm and fsyncs it.
func syncFile(name string, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Chmod(perm)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// SyncDir fsyncs the directory dir, so that a rename or a new entry in it survives a crash.
func SyncDir(dir string) error { return syncPath(dir) }

// syncPath opens p (a regular file or a directory), fsyncs and closes it; a failed open is
// returned as it is, a failed sync or close names p.
func syncPath(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", p, err)
	}
	return nil
}

// DiskFull says that the disk is full, naming path, when err is ENOSPC or EDQUOT; other
// errors (and nil) are returned as they are.
func DiskFull(path string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%s: the disk is full (%w)", path, err)
	}
	return err
}

// Rename renames oldpath to newpath (a file or a directory, as os.Rename does: an existing
// file at newpath is replaced, an existing directory, even an empty one, makes it fail with
// EEXIST) and then fsyncs newpath's directory and,
// when it is another one, oldpath's, so that once Rename returns nil the new name (and the
// old name's absence) survive a crash. It does not sync what the renamed file or directory
// holds: a file whose content must survive is synced by its writer first (or put into place
// with Write or PutDir). When the rename fails its error is returned as os.Rename gives it
// and nothing has changed; an error after the rename (syncing a directory) means the rename
// was done but may not survive a crash.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	return syncParents(oldpath, newpath)
}

// PutDir puts the finished directory tmpDir into place as final, in one rename. First
// everything under tmpDir is synced (SyncTree), then tmpDir is renamed to final and final's
// directory (and tmpDir's, when another) is synced. So at every instant final is either
// absent or the whole of tmpDir, and once PutDir returns nil that survives a crash. Anything
// at final, even an empty directory (os.Rename's EEXIST), makes it fail without changing
// anything: tmpDir stays as it was, for the caller to remove or to put into place once final
// is out of the way. An error from a sync before the rename also leaves tmpDir where it is;
// an error from the sync after the rename means final is in place but may not survive a
// crash. The rename's error is returned as os.Rename gives it.
func PutDir(tmpDir, final string) error {
	if err := SyncTree(tmpDir); err != nil {
		return err
	}
	if err := os.Rename(tmpDir, final); err != nil {
		return err
	}
	return syncParents(tmpDir, final)
}

// MoveInto moves the entries names (files or directories) of the directory fromDir into the
// directory toDir, under the same names, one rename each in the given order. First everything
// under fromDir is synced (SyncTree); before each rename, before (when not nil) is called with
// the destination path; after the last one toDir and fromDir are synced, once. So each entry
// is at every instant wholly in one of the two directories, and once MoveInto returns nil all
// of them are in toDir with their contents, and that survives a crash. An existing file at a
// destination is replaced, an existing directory makes that rename fail (as os.Rename does).
// It stops at the first failure, returning the rename's error as os.Rename gives it: the
// entries moved before it stay moved (and synced), the others stay in fromDir.
func MoveInto(fromDir, toDir string, names []string, before func(dst string)) error {
	if err := SyncTree(fromDir); err != nil {
		return err
	}
	var err error
	for _, n := range names {
		dst := filepath.Join(toDir, n)
		if before != nil {
			before(dst)
		}
		if err = os.Rename(filepath.Join(fromDir, n), dst); err != nil {
			break
		}
	}
	serr := SyncDir(toDir)
	if serr == nil && filepath.Clean(fromDir) != filepath.Clean(toDir) {
		serr = SyncDir(fromDir)
	}
	if err == nil {
		err = serr
	}
	return err
}

// syncParents fsyncs the directory of newpath and, when it is another one, that of oldpath.
func syncParents(oldpath, newpath string) error {
	nd, od := filepath.Dir(filepath.Clean(newpath)), filepath.Dir(filepath.Clean(oldpath))
	if err := SyncDir(nd); err != nil {
		return err
	}
	if od != nd {
		return SyncDir(od)
	}
	return nil
}

// SyncTree fsyncs root and, when it is a directory, every regular file and directory under
// it, so that their contents and entries survive a crash. Symbolic links are not followed
// and other files (FIFOs, devices, sockets) are left alone, never opened.
func SyncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		return syncPath(p)
	})
}
