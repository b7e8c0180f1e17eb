package run

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLockRefusesLinksAndSpecialFiles: a .lock that is a symbolic link (to a file, to a
// missing file), a hard link to a file elsewhere, a FIFO or a directory is refused with an
// error naming it, and the file it points to keeps every byte (#25 item 2: Acquire and
// Release truncated the link's target). Each target holds fresh random bytes.
func TestLockRefusesLinksAndSpecialFiles(t *testing.T) {
	for _, kind := range []string{"symlink", "dangling-symlink", "hardlink", "fifo", "dir"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			outside := t.TempDir()
			target := filepath.Join(outside, "precious.bin")
			want := make([]byte, 1+int(randByte())*37)
			_, _ = rand.Read(want)
			if err := os.WriteFile(target, want, 0o644); err != nil {
				t.Fatal(err)
			}
			lock := filepath.Join(dir, LockName)
			var err error
			switch kind {
			case "symlink":
				err = os.Symlink(target, lock)
			case "dangling-symlink":
				err = os.Symlink(filepath.Join(outside, "missing"), lock)
			case "hardlink":
				err = os.Link(target, lock)
			case "fifo":
				err = syscall.Mkfifo(lock, 0o644)
			case "dir":
				err = os.Mkdir(lock, 0o755)
			}
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				l, err := Acquire(dir)
				if err == nil {
					l.Release()
				}
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Acquire hangs")
			}
			if err == nil {
				t.Fatalf("Acquire took a %s lock", kind)
			}
			if !strings.Contains(err.Error(), lock) || !strings.Contains(err.Error(), "refusing") {
				t.Errorf("the error does not name %s and say it is refused: %v", lock, err)
			}
			if got, rerr := os.ReadFile(target); rerr != nil || !bytes.Equal(got, want) {
				t.Errorf("the %s's target changed: %d bytes, was %d (%v)", kind, len(got), len(want), rerr)
			}
			if kind == "dangling-symlink" {
				if _, err := os.Lstat(filepath.Join(outside, "missing")); err == nil {
					t.Errorf("Acquire created the dangling link's target")
				}
			}
			if err := Busy(dir); err != nil {
				t.Errorf("Busy: %v", err)
			}
		})
	}
}

// TestLockNeverTruncates: taking and releasing the lock of a regular .lock only writes the pid
// record over its start; the lock file is never truncated.
func TestLockNeverTruncates(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, LockName)
	old := make([]byte, 100+int(randByte()))
	_, _ = rand.Read(old)
	if err := os.WriteFile(lock, old, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(lock)
	if len(got) != len(old) || !bytes.Equal(got[pidRecordLen:], old[pidRecordLen:]) {
		t.Errorf("held: the lock file is %d bytes, was %d, or changed past its pid record", len(got), len(old))
	}
	l.Release()
	got, _ = os.ReadFile(lock)
	if len(got) != len(old) || !bytes.Equal(got[pidRecordLen:], old[pidRecordLen:]) {
		t.Errorf("released: the lock file is %d bytes, was %d, or changed past its pid record", len(got), len(old))
	}
}

func randByte() byte {
	var b [1]byte
	_, _ = rand.Read(b[:])
	return b[0]
}
