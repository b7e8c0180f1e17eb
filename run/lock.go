// Package run is a run directory as an artefact. It keeps a run directory safe against crashes and concurrent writers: an
// exclusive lock held by the one process that writes the run, checkpoints written as one
// atomic unit (a directory with a manifest of sha256 sums, renamed into place), the
// clean-up of temporary files a killed process leaves behind, and the kill points the
// chaos tests use to SIGKILL a run at every step of a checkpoint.
package run

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockName is the lock file inside a run directory. It stays after the run ends; the lock
// is the flock on it, which the kernel releases when its holder dies. A process that created
// the lock file may remove it while it holds the lock (a run that fails before it wrote
// anything): Acquire checks that the file it locked is still the one at the path, so a
// process that opened the removed file retries on the new one instead of holding a lock
// nobody else can see.
const LockName = ".lock"

// Lock is a held run-directory lock.
type Lock struct {
	f       *os.File
	path    string
	created bool
}

// ErrLocked is wrapped by the error of Acquire when another process holds the lock.
var ErrLocked = errors.New("run directory is locked by another process")

// Acquire takes the exclusive lock of dir (which must exist) without waiting. When another
// process holds it, the error names that process's pid.
func Acquire(dir string) (*Lock, error) {
	for try := 0; ; try++ {
		l, err := acquire(dir)
		if err != errStale || try == 20 {
			if err == errStale {
				err = fmt.Errorf("run directory %s: its lock file keeps being replaced", dir)
			}
			return l, err
		}
	}
}

// errStale: the locked file was removed or replaced after it was opened.
var errStale = errors.New("stale lock file")

func acquire(dir string) (*Lock, error) {
	p := filepath.Join(dir, LockName)
	// O_NOFOLLOW: a symbolic link at .lock is refused, never followed (#25 item 2: the lock
	// used to truncate the file a link pointed to); O_NONBLOCK: a FIFO there cannot hang the
	// open.
	const flags = os.O_RDWR | syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	f, err := os.OpenFile(p, flags|os.O_CREATE|os.O_EXCL, 0o644)
	created := err == nil
	if errors.Is(err, fs.ErrExist) {
		if f, err = os.OpenFile(p, flags, 0o644); errors.Is(err, fs.ErrNotExist) {
			return nil, errStale // removed in between
		}
	}
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("run directory %s: lock file %s is a symbolic link; refusing to follow it (remove it)", dir, p)
		}
		if errors.Is(err, syscall.EISDIR) {
			return nil, fmt.Errorf("run directory %s: lock file %s is a directory, not a regular file; refusing to use it (remove it)", dir, p)
		}
		return nil, fmt.Errorf("run directory %s: lock: %w", dir, err)
	}
	if err := checkLockFile(f, p); err != nil {
		f.Close()
		return nil, fmt.Errorf("run directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, lockedErr(dir, p)
		}
		return nil, fmt.Errorf("run directory %s: lock %s: %w", dir, p, err)
	}
	held, err1 := f.Stat()
	now, err2 := os.Lstat(p)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		return nil, errStale
	}
	// The pid is written over the start of the file in a fixed-width record, never by
	// truncating it.
	_, _ = f.WriteAt(pidRecord(os.Getpid()), 0)
	return &Lock{f: f, path: p, created: created}, nil
}

// checkLockFile refuses a lock file that is not a regular file of its own (a FIFO, a device,
// a directory, or a hard link to a file elsewhere, which writing the pid would change).
func checkLockFile(f *os.File, p string) error {
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("lock file %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("lock file %s is not a regular file (%v); refusing to use it (remove it)", p, st.Mode().Type())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Nlink != 1 {
		return fmt.Errorf("lock file %s has %d hard links (another file shares it); refusing to use it (remove it)", p, sys.Nlink)
	}
	return nil
}

// pidRecordLen is the size of the record a lock holder writes at the start of the lock
// file: its pid, padded with spaces, and a newline. Release blanks it.
const pidRecordLen = 20

func pidRecord(pid int) []byte {
	b := []byte(fmt.Sprintf("%-*d\n", pidRecordLen-1, pid))
	if pid < 0 {
		b = []byte(strings.Repeat(" ", pidRecordLen-1) + "\n")
	}
	return b
}

// lockedErr names the process that holds the lock file p of dir.
func lockedErr(dir, p string) error {
	// the holder writes its pid right after taking the lock: give it a moment
	holder := "unknown pid"
	for i := 0; i < 40 && holder == "unknown pid"; i++ {
		if b, rerr := readLockFile(p); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
				holder = "pid " + strconv.Itoa(pid)
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("run directory %s is in use by another spectraclip process (%s holds %s): %w", dir, holder, p, ErrLocked)
}

// readLockFile reads the start of the lock file p without following a link or waiting on a
// FIFO.
func readLockFile(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 64)
	n, err := f.ReadAt(b, 0)
	if n > 0 {
		err = nil
	}
	return b[:n], err
}

// Busy reports, without creating or changing anything, whether another process holds the
// lock of dir: an error naming its pid (wrapping ErrLocked), or nil. A writer asks before it
// judges the directory's contents, so that a run being written is never mistaken for an
// interrupted or finished one.
func Busy(dir string) error {
	p := filepath.Join(dir, LockName)
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil // no lock file (or one Acquire refuses): nobody holds it
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return lockedErr(dir, p)
		}
		return nil
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return nil
}

// Created says whether this process created the lock file (it did not exist before).
func (l *Lock) Created() bool { return l != nil && l.created }

// Release gives the lock up. It is safe to call on nil and more than once.
func (l *Lock) Release() {
	if l == nil || l.f == nil {
		return
	}
	_, _ = l.f.WriteAt(pidRecord(-1), 0)
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	l.f.Close()
	l.f = nil
}
