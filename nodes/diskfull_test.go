package nodes

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testfs"
)

// TestWriteFileAtomicDiskFull: on a full disk (nothing free, a few KB, most of the file)
// WriteFileAtomic's error says the disk is full and names the file being written (not only
// its temporary name), the previous file stays and no temporary file is left (#25 item 1).
func TestWriteFileAtomicDiskFull(t *testing.T) {
	dir := testfs.MountTmpfs(t, 256)
	target := filepath.Join(dir, "config.yaml")
	old := []byte("previous: true\n")
	if err := os.WriteFile(target, old, 0o644); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64<<10)
	_, _ = rand.Read(data)
	for _, leave := range []int64{0, 4 << 10, 12 << 10, 40 << 10} {
		testfs.FillTo(t, dir, leave)
		err := WriteFileAtomic(target, data)
		when := fmt.Sprintf("%d bytes free", leave)
		testfs.CheckFullDiskWrite(t, when, err, target, old)
		if !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%s: the error does not wrap ENOSPC: %v", when, err)
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
