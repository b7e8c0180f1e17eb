package run

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A checkpoint whose weights or manifest is a FIFO (or a link to a device) is not complete:
// Verify says so at once instead of blocking in open or reading forever.
func TestVerifyRefusesNonRegularFiles(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "checkpoints")
	stage(t, parent, "last", 3)
	last := filepath.Join(parent, "last")
	w := filepath.Join(last, "weights.pt")
	if err := os.Remove(w); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(w, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(last); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO weights: %v", err)
	}
	if n := len(Complete(parent)); n != 0 {
		t.Fatalf("%d complete checkpoints with FIFO weights", n)
	}
	os.Remove(w)
	if err := os.Symlink("/dev/zero", w); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(last); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("weights linked to /dev/zero: %v", err)
	}
	m := filepath.Join(last, ManifestName)
	os.Remove(m)
	if err := syscall.Mkfifo(m, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(last); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO manifest: %v", err)
	}
}

// Created tells the process that made the lock file (it may remove it while it holds the
// lock) from one that found it there.
func TestLockCreated(t *testing.T) {
	dir := t.TempDir()
	a, err := Acquire(dir)
	if err != nil || !a.Created() {
		t.Fatalf("first: %v created %v", err, a.Created())
	}
	a.Release()
	b, err := Acquire(dir)
	if err != nil || b.Created() {
		t.Fatalf("second: %v created %v", err, b.Created())
	}
	// the creator removed the file while holding it: the next writer locks a new one
	if err := os.Remove(filepath.Join(dir, LockName)); err != nil {
		t.Fatal(err)
	}
	b.Release()
	c, err := Acquire(dir)
	if err != nil || !c.Created() {
		t.Fatalf("after removal: %v created %v", err, c.Created())
	}
	c.Release()
}
