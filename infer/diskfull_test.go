package infer

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

// TestWriteNewDiskFull: a frame file that does not fit fails with an error that says the disk
// is full and names the file (#25 item 1).
func TestWriteNewDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 128)
	data := make([]byte, 32<<10)
	_, _ = rand.Read(data)
	for i, leave := range []int64{0, 4 << 10, 16 << 10} {
		fillTo(t, dir, leave)
		p := filepath.Join(dir, fmt.Sprintf("frame%d_scores.npy", i))
		err := writeNew(p, data)
		if err == nil || !strings.Contains(err.Error(), "disk is full") || !strings.Contains(err.Error(), p) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%d bytes free: %v (want an error that says the disk is full and names %s)", leave, err, p)
		}
		os.Remove(p)
	}
	_ = bytes.MinRead
}
