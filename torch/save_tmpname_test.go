package torch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSaveLeavesNeighbourTmpFile: Module.Save and Optimizer.Save put their file into place
// through internal/atomicfile's unique temporary name, so a file that happens to be called
// PATH.tmp (another save's, or the user's) is neither overwritten nor renamed away, and no
// temporary file of their own is left (#27; before, both wrote PATH.tmp and renamed it).
func TestSaveLeavesNeighbourTmpFile(t *testing.T) {
	dir := t.TempDir()
	s := NewScope()
	defer s.Close()
	m, err := NewModule("tmpname")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.RegisterBuffer("b", FromSlice(s, CPU, []float32{1, 2, 3}, 3)); err != nil {
		t.Fatal(err)
	}
	p := FromSlice(s, CPU, []float32{1, 2}, 2)
	if err := p.SetRequiresGrad(true); err != nil {
		t.Fatal(err)
	}
	o, err := NewOptimizer(SGD, []*Tensor{p}, OptimConfig{LR: 0.1, Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Free()
	for name, save := range map[string]func(string) error{"module.pt": m.Save, "optim.pt": o.Save} {
		target := filepath.Join(dir, name)
		neighbour := []byte("not a checkpoint: " + name)
		if err := os.WriteFile(target+".tmp", neighbour, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := save(target); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(target); err != nil || st.Size() == 0 {
			t.Fatalf("%s: not saved: %v", name, err)
		}
		if b, err := os.ReadFile(target + ".tmp"); err != nil || string(b) != string(neighbour) {
			t.Errorf("%s: %s.tmp was overwritten or moved: %q %v", name, name, b, err)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "."+name+".tmp") {
				t.Errorf("%s: left %s", name, e.Name())
			}
		}
	}
}
