package sweep

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testfs"
)

// TestEmitSlurmDiskFull: on a full tmpfs EmitSlurm's error says the disk is full and names
// the script, the previous script stays and no temporary file is left (#27: the script is
// put into place by internal/atomicfile).
func TestEmitSlurmDiskFull(t *testing.T) {
	dir := testfs.MountTmpfs(t, 256)
	if err := os.MkdirAll(filepath.Join(dir, "slurm"), 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, ScriptName)
	old := "#!/bin/bash\necho previous\n"
	if err := os.WriteFile(target, []byte(old), 0o755); err != nil {
		t.Fatal(err)
	}
	plan := &Plan{Name: "full", Workdir: dir, Points: []Point{{Index: 0, ID: "p0"}, {Index: 1, ID: "p1"}}}
	testfs.FillTo(t, dir, 0)
	_, err := EmitSlurm(dir, plan, "/usr/local/bin/spectraclip", SlurmOptions{})
	testfs.CheckFullDiskWrite(t, "EmitSlurm", err, target, []byte(old))
	os.Remove(filepath.Join(dir, "filler"))
	p, err := EmitSlurm(dir, plan, "/usr/local/bin/spectraclip", SlurmOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("the script's mode: %v %v", st, err)
	}
}
