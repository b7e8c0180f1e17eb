package scene

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/scene/scenespec"
)

// Issue 26.9: compare --scene with split none runs the learned variants without a gradient
// epoch (max_epochs 0): their rows are their initialisations and say so in every output
// (the table, comparison.json with "trained": false, the CSV, the plot's legend, which is
// drawn from the summary rows). Whether a row was trained is checked against the run itself:
// a run that trained has a history and checkpoints, an untrained one neither. With the
// objects split the same variants train, their rows carry no label, "trained": true and the
// epoch of the checkpoint evaluated.
func TestUntrainedRowsAreLabelled(t *testing.T) {
	dir := t.TempDir()
	path := genScene(t, dir, 32, 32, 7, 8, 3)
	ov := []string{"training.trainer.max_epochs=1", "training.threads=1", "training.trainer.enable_progress_bar=false"}
	for _, split := range []string{"none", "objects"} {
		out := filepath.Join(dir, split)
		c, err := Compare(CompareOptions{Out: out, Seeds: []uint64{1}, Variants: []string{"pca", "drcnn", "concrete"},
			Scenes: []scenespec.Spec{{Path: path, CubeVar: "cube", GTVar: "gt", Split: split, Fractions: scenespec.DefaultFractions, Block: 8}}, Overrides: ov})
		if err != nil {
			t.Fatalf("split %s: %v", split, err)
		}
		md, err := os.ReadFile(filepath.Join(out, "comparison.md"))
		if err != nil {
			t.Fatal(err)
		}
		var js struct {
			Rows []map[string]any `json:"rows"`
		}
		b, err := os.ReadFile(filepath.Join(out, "comparison.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &js); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(filepath.Join(out, "comparison.csv"))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		col := map[string]int{}
		for i, h := range recs[0] {
			col[h] = i
		}
		for i, r := range c.Rows {
			if r.RunDir == "" || strings.HasPrefix(r.Row, "zero-shot") {
				if tr, ok := js.Rows[i]["trained"]; ok || strings.Contains(r.Row, "untrained") {
					t.Errorf("split %s: row %q is not a learned variant but carries trained %v", split, r.Row, tr)
				}
				continue
			}
			// the run itself: did it train?
			var m struct {
				History []json.RawMessage `json:"history"`
			}
			mb, err := os.ReadFile(filepath.Join(r.RunDir, "metrics.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(mb, &m); err != nil {
				t.Fatal(err)
			}
			_, ckErr := os.Stat(filepath.Join(r.RunDir, "checkpoints", "last"))
			trained := len(m.History) > 0 && ckErr == nil
			if want := split == "objects"; trained != want {
				t.Fatalf("split %s: run %s trained %v, want %v (history %d, last checkpoint %v)", split, r.RunDir, trained, want, len(m.History), ckErr)
			}
			base := map[bool]string{true: "DRCNN", false: "Concrete"}[strings.HasSuffix(r.RunDir, "drcnn")]
			want := base
			if !trained {
				want = base + " (initialisation, untrained)"
			}
			if r.Row != want {
				t.Errorf("split %s: row %q, want %q", split, r.Row, want)
			}
			if !strings.Contains(string(md), "| "+want+" |") {
				t.Errorf("split %s: comparison.md has no row %q:\n%s", split, want, md)
			}
			if !trained && strings.Contains(string(md), "| "+base+" |") {
				t.Errorf("split %s: comparison.md shows the untrained %s as %q:\n%s", split, base, base, md)
			}
			if got := js.Rows[i]; got["row"] != want || got["trained"] != trained {
				t.Errorf("split %s: comparison.json row %v trained %v, want %q trained %v", split, got["row"], got["trained"], want, trained)
			}
			if ce, ok := js.Rows[i]["checkpoint_epoch"].(float64); trained != ok || (ok && (ce < 0 || ce > 1)) {
				t.Errorf("split %s: comparison.json row %q checkpoint_epoch %v", split, want, js.Rows[i]["checkpoint_epoch"])
			}
			rec := recs[1+i]
			if rec[col["row"]] != want || rec[col["trained"]] != map[bool]string{true: "true", false: "false"}[trained] {
				t.Errorf("split %s: comparison.csv row %q trained %q, want %q %v", split, rec[col["row"]], rec[col["trained"]], want, trained)
			}
			found := false
			for _, s := range c.Summary { // the bar plot's legend
				found = found || s.Row == want
				if !trained && s.Row == base {
					t.Errorf("split %s: summary (plot legend) row %q for an untrained run", split, s.Row)
				}
			}
			if !found {
				t.Errorf("split %s: no summary (plot legend) row %q", split, want)
			}
		}
	}
}
