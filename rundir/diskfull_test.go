package rundir

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// mountTmpfs mounts a tmpfs of sizeKiB under a new temporary folder for the test: a real
// file system that runs out of space. Without the privilege to mount it skips, except under
// CI=true, where it fails.
func mountTmpfs(t *testing.T, sizeKiB int) string {
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

// fillTo fills the file system of dir with the file filler until about leave bytes are free.
func fillTo(t *testing.T, dir string, leave int64) {
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
}

// TestCommitDiskFull: a checkpoint whose manifest does not fit fails with an error that says
// the disk is full and names the checkpoint; nothing of it stays, and the previous
// checkpoint of that name is still complete (#25 item 1).
func TestCommitDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 256)
	parent := filepath.Join(dir, "checkpoints")
	stage(t, parent, "last", 1)
	// many files make a manifest larger than what is left
	s, err := Stage(parent, "last")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		b := make([]byte, 1+i)
		_, _ = rand.Read(b)
		if err := os.WriteFile(s.Path(fmt.Sprintf("file%03d.bin", i)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fillTo(t, dir, 0)
	err = s.Commit(2)
	if err == nil {
		t.Fatal("the commit succeeded on a full disk")
	}
	if !strings.Contains(err.Error(), "disk is full") || !strings.Contains(err.Error(), filepath.Join(parent, "last")) {
		t.Errorf("the error does not say the disk is full and name the checkpoint: %v", err)
	}
	if m, verr := Verify(filepath.Join(parent, "last")); verr != nil || m.Epoch != 1 {
		t.Errorf("the previous checkpoint: %v", verr)
	}
	ents, _ := os.ReadDir(parent)
	for _, e := range ents {
		if e.Name() != "last" {
			t.Errorf("left %s", e.Name())
		}
	}
}
