package dataset

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testfs"
)

// TestWriteENVIDiskFull: on a full tmpfs WriteENVI's error says the disk is full and names
// the .img file, the previous .img stays and no temporary file is left (#27: the ENVI writer
// is internal/atomicfile).
func TestWriteENVIDiskFull(t *testing.T) {
	dir := testfs.MountTmpfs(t, 256)
	base := filepath.Join(dir, "cube")
	old := []byte("previous img")
	if err := os.WriteFile(base+".img", old, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Cube{H: 32, W: 32, C: 16, Data: make([]float32, 32*32*16)}
	for i := range c.Data {
		c.Data[i] = float32(i%97) / 97
	}
	testfs.FillTo(t, dir, 0)
	err := WriteENVI(base, c, ENVIWriteOptions{DataType: ENVIFloat32})
	testfs.CheckFullDiskWrite(t, "WriteENVI", err, base+".img", old)
}
