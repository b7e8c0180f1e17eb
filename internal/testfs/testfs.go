// Package testfs gives tests a real file system that runs out of space: a small tmpfs mounted
// for the test, and a filler that leaves a chosen number of bytes free. It is imported only
// by tests.
package testfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// MountTmpfs mounts a tmpfs of sizeKiB on a new temporary folder for the rest of the test and
// unmounts it at cleanup. Without the privilege to mount it skips, except under CI=true (where
// make deps has set the machine up and a skip would hide the test), where it fails.
func MountTmpfs(t testing.TB, sizeKiB int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dk,mode=0755", sizeKiB), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("cannot mount a tmpfs at %s (uid %d): %v: %s", dir, os.Getuid(), err, bytes.TrimSpace(out))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// FillTo fills dir's file system with the file "filler" until leave bytes are free (rounded
// down to its blocks) and returns the free bytes it then measures.
func FillTo(t testing.TB, dir string, leave int64) int64 {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "filler"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<16)
	var n int64
	for len(chunk) > 0 {
		w, err := f.Write(chunk)
		n += int64(w)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			chunk = chunk[:len(chunk)/2]
		}
	}
	if err := f.Truncate(max(n-leave, 0)); err != nil {
		t.Fatal(err)
	}
	return FreeBytes(t, dir)
}

// FreeBytes is what an unprivileged writer can still put on dir's file system.
func FreeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// CheckFullDiskWrite checks what a writer that puts target into place must leave when the
// disk was full: an error that says the disk is full and names target, target still holding
// old, and no temporary (".tmp") file beside it. when prefixes the messages.
func CheckFullDiskWrite(t testing.TB, when string, err error, target string, old []byte) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: wrote %s on a full disk", when, target)
	}
	if !strings.Contains(err.Error(), "the disk is full") || !strings.Contains(err.Error(), target) {
		t.Errorf("%s: the error does not say the disk is full and name %s: %v", when, target, err)
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, old) {
		t.Errorf("%s: the previous %s changed", when, filepath.Base(target))
	}
	NoTempFiles(t, when, filepath.Dir(target))
}

// NoTempFiles fails the test for every temporary (".tmp") file left in dir.
func NoTempFiles(t testing.TB, when, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("%s: left %s", when, e.Name())
		}
	}
}
