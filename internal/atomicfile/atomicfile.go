// Package atomicfile puts files into place atomically: the data goes to a temporary file in
// the target's directory, is synced, renamed over the target, and the directory is synced,
// so that a reader (or a machine that crashes) sees either the previous file or the whole
// new one, never a part. On any error the temporary file is removed and the previous file
// stays. It imports nothing of this module, so every package can use it.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
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
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
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
