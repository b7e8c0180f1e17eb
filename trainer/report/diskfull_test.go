package report

import (
	"bytes"
	"image"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testfs"
)

// TestSavePNGDiskFull: on a full tmpfs SavePNG's error says the disk is full and names the
// PNG, the previous PNG stays and no temporary file is left (#27: the report writer is
// internal/atomicfile).
func TestSavePNGDiskFull(t *testing.T) {
	dir := testfs.MountTmpfs(t, 256)
	target := filepath.Join(dir, "heat.png")
	old := []byte("previous png")
	if err := os.WriteFile(target, old, 0o644); err != nil {
		t.Fatal(err)
	}
	img := image.NewNRGBA(image.Rect(0, 0, 64, 64))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7919 >> 3)
	}
	testfs.FillTo(t, dir, 0)
	err := SavePNG(target, img)
	if err == nil {
		t.Fatal("wrote a PNG on a full disk")
	}
	if !strings.Contains(err.Error(), "the disk is full") || !strings.Contains(err.Error(), target) {
		t.Errorf("the error does not say the disk is full and name %s: %v", target, err)
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, old) {
		t.Error("the previous PNG changed")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("left %s", e.Name())
		}
	}
}
