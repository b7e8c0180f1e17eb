package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 26.9 on the frame data: compare with max_epochs 0 trains no learned variant, and its
// table, comparison.md and comparison.json say so for drcnn and concrete ("(initialisation,
// untrained)", "trained": false), not for the statistical pca. Whether a variant trained is
// read from its own run (no history, no checkpoint). With one epoch the same rows carry no
// label and name the checkpoint's epoch.
func TestCompareLabelsUntrainedVariants(t *testing.T) {
	dir := t.TempDir()
	for _, epochs := range []string{"0", "1"} {
		cmp := filepath.Join(dir, "cmp"+epochs)
		out := mustRun(t, append([]string{"compare", "--out", cmp}, tiny(dir, epochs)...)...)
		md, err := os.ReadFile(filepath.Join(cmp, "comparison.md"))
		if err != nil {
			t.Fatal(err)
		}
		var js struct {
			Results []map[string]any `json:"results"`
		}
		b, err := os.ReadFile(filepath.Join(cmp, "comparison.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &js); err != nil {
			t.Fatal(err)
		}
		for _, r := range js.Results {
			v := r["variant"].(string)
			_, ckErr := os.Stat(filepath.Join(cmp, v, "checkpoints", "last"))
			h, _ := r["history"].([]any)
			trained := ckErr == nil && len(h) > 0
			if want := epochs == "1" && v != "pca"; trained != want {
				t.Fatalf("max_epochs %s: %s trained %v, want %v", epochs, v, trained, want)
			}
			if r["trained"] != trained {
				t.Errorf("max_epochs %s: comparison.json %s trained %v, want %v", epochs, v, r["trained"], trained)
			}
			row := "| " + v + " |"
			if !trained && v != "pca" {
				row = "| " + v + " (initialisation, untrained) |"
			}
			for name, text := range map[string]string{"stdout": out, "comparison.md": string(md)} {
				if !strings.Contains(text, row) {
					t.Errorf("max_epochs %s: %s has no row %q:\n%s", epochs, name, row, text)
				}
			}
			if trained && !strings.Contains(string(md), "| epoch ") {
				t.Errorf("max_epochs %s: comparison.md names no checkpoint epoch:\n%s", epochs, md)
			}
		}
	}
}
