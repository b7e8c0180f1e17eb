package run

import (
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// MakeOutputDir/Undo remove exactly what was created: the top-most new directory, or in a
// directory that existed only the files noted as new (never the ones that were there).
func TestMadePathsUndoOnlyWhatWasMade(t *testing.T) {
	base := t.TempDir()
	deep := filepath.Join(base, "a", "b", "c")
	m, err := MakeOutputDir(deep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deep, "x"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m.Undo()
	if _, err := os.Stat(filepath.Join(base, "a")); !os.IsNotExist(err) {
		t.Errorf("%s/a left behind: %v", base, err)
	}
	if _, err := os.Stat(base); err != nil {
		t.Errorf("the existing parent went: %v", err)
	}

	// an existing directory with files of its own
	old := map[string]bool{}
	for i := 0; i < 1+rand.Intn(4); i++ {
		p := filepath.Join(base, "old"+string(rune('a'+i)))
		old[p] = true
		if err := os.WriteFile(p, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err = MakeOutputDir(base)
	if err != nil {
		t.Fatal(err)
	}
	var news []string
	for p := range old {
		m.Note(p) // existing: never noted
	}
	for i := 0; i < 1+rand.Intn(4); i++ {
		p := filepath.Join(base, "new"+string(rune('a'+i)))
		m.Note(p)
		news = append(news, p)
		if err := os.WriteFile(p, []byte("new"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m.Undo()
	for p := range old {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s (there before) was removed", p)
		}
	}
	for _, p := range news {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s (new) left behind", p)
		}
	}
}
