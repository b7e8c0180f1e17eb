package report

import (
	"image"
	"os"
	"path/filepath"
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
	testfs.CheckFullDiskWrite(t, "SavePNG", SavePNG(target, img), target, old)
}
