package nodes

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

// TestWriteFileAtomicDiskFull: on a full disk (nothing free, a few KB, most of the file)
// WriteFileAtomic's error says the disk is full and names the file being written (not only
// its temporary name), the previous file stays and no temporary file is left (#25 item 1).
func TestWriteFileAtomicDiskFull(t *testing.T) {
	dir := mountTmpfs(t, 256)
	target := filepath.Join(dir, "config.yaml")
	old := []byte("previous: true\n")
	if err := os.WriteFile(target, old, 0o644); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64<<10)
	_, _ = rand.Read(data)
	for _, leave := range []int64{0, 4 << 10, 12 << 10, 40 << 10} {
		fillTo(t, dir, leave)
		err := WriteFileAtomic(target, data)
		if err == nil {
			t.Fatalf("%d bytes free: wrote %d bytes", leave, len(data))
		}
		if !strings.Contains(err.Error(), "disk is full") || !strings.Contains(err.Error(), target) {
			t.Errorf("%d bytes free: the error does not say the disk is full and name %s: %v", leave, target, err)
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%d bytes free: the error does not wrap ENOSPC: %v", leave, err)
		}
		if b, _ := os.ReadFile(target); !bytes.Equal(b, old) {
			t.Errorf("%d bytes free: the previous file changed", leave)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp") {
				t.Errorf("%d bytes free: left %s", leave, e.Name())
			}
		}
	}
	os.Remove(filepath.Join(dir, "filler"))
	if err := WriteFileAtomic(target, data); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, data) {
		t.Fatal("after freeing space: the file differs from what was written")
	}
}
