package dataset

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
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
	if err == nil {
		t.Fatal("wrote a cube on a full disk")
	}
	if !strings.Contains(err.Error(), "the disk is full") || !strings.Contains(err.Error(), base+".img") {
		t.Errorf("the error does not say the disk is full and name %s.img: %v", base, err)
	}
	if b, _ := os.ReadFile(base + ".img"); !bytes.Equal(b, old) {
		t.Error("the previous .img changed")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("left %s", e.Name())
		}
	}
}
