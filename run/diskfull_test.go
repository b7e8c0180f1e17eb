package run

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testfs"
)

// TestCommitDiskFull: a checkpoint whose manifest does not fit fails with an error that says
// the disk is full and names the checkpoint; nothing of it stays, and the previous
// checkpoint of that name is still complete (#25 item 1).
func TestCommitDiskFull(t *testing.T) {
	dir := testfs.MountTmpfs(t, 256)
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
	testfs.FillTo(t, dir, 0)
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
