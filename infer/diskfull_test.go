package infer

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testfs"
)

// TestWriteNewDiskFull: a frame file that does not fit fails with an error that says the disk
// is full and names the file (#25 item 1).
func TestWriteNewDiskFull(t *testing.T) {
	dir := testfs.MountTmpfs(t, 128)
	data := make([]byte, 32<<10)
	_, _ = rand.Read(data)
	for i, leave := range []int64{0, 4 << 10, 16 << 10} {
		testfs.FillTo(t, dir, leave)
		p := filepath.Join(dir, fmt.Sprintf("frame%d_scores.npy", i))
		err := writeNew(p, data)
		if err == nil || !strings.Contains(err.Error(), "disk is full") || !strings.Contains(err.Error(), p) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%d bytes free: %v (want an error that says the disk is full and names %s)", leave, err, p)
		}
		os.Remove(p)
	}
	_ = bytes.MinRead
}
