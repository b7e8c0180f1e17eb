package sweep

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spectraclip/spectraclip/run"
)

// TestResumeFromAnyCompleteCheckpoint: a run killed while its last/ checkpoint was being
// replaced (only a top-k one and the kept previous version are complete) is resumed, not
// moved to the attic and started again; a run with no complete checkpoint starts again.
func TestResumeFromAnyCompleteCheckpoint(t *testing.T) {
	dir := t.TempDir()
	ck := filepath.Join(dir, "checkpoints")
	if got := checkpointPrefix(dir); got != "" {
		t.Fatalf("no checkpoints: %q, want none", got)
	}
	st, err := run.Stage(ck, "epoch=01")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(st.Path("weights.pt"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(1); err != nil {
		t.Fatal(err)
	}
	// a torn last/: its manifest was never written
	if err := os.MkdirAll(filepath.Join(ck, "last"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ck, "last", "weights.pt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := checkpointPrefix(dir), filepath.Join(ck, "last"); got != want {
		t.Errorf("torn last/ beside a complete epoch=01: %q, want %q (train --resume falls back)", got, want)
	}
	if err := os.RemoveAll(filepath.Join(ck, "epoch=01")); err != nil {
		t.Fatal(err)
	}
	if got := checkpointPrefix(dir); got != "" {
		t.Errorf("only a torn last/: %q, want none", got)
	}
}
