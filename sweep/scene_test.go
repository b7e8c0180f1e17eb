package sweep

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSceneDataSource: a sweep whose data source is a labelled scene runs every point with
// `train --scene` (whole-scene pixel split, scene defaults) and records that command; the
// points' test metrics are the runs' own. Uses the shipped ABU scene.
func TestSceneDataSource(t *testing.T) {
	path := filepath.Join("..", "..", "shared", "data", "real", "abu-airport-1.mat")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("the shipped real scene is not there (%v)", err)
	}
	if testing.Short() {
		t.Skip("trains on a real scene; skipped with -short")
	}
	bin := spectraclipBinary(t)
	work := t.TempDir()
	data, err := SceneSources([]string{path})
	if err != nil {
		t.Fatal(err)
	}
	spec := &Spec{Name: "scene", Bases: []Base{{Variant: "pca"}, {Variant: "drcnn"}}, Seeds: []uint64{1},
		Overrides: []string{"training.trainer.max_epochs=2", "+pipeline.detector.image_size=64"}, Data: data, Metric: DefaultMetric}
	dir := filepath.Join(work, "sweep")
	sum, err := Execute(Options{Dir: dir, Spec: spec, Binary: bin, Workers: 1, Threads: 2, Point: -1, Log: quietLog(), Workdir: work})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Results.Points) != 2 {
		t.Fatalf("%d points, want 2", len(sum.Results.Points))
	}
	for _, p := range sum.Results.Points {
		if p.Status != Done {
			t.Fatalf("point %s: %s (%s)", p.ID, p.Status, p.Error)
		}
		if !strings.Contains(p.Command, "--scene") || !strings.Contains(p.Command, "abu-airport-1.mat") {
			t.Errorf("point %s: recorded command %q does not train on the scene", p.ID, p.Command)
		}
		m := readMetrics(t, filepath.Join(dir, p.RunDir, "metrics.json"))
		for _, k := range []string{"auroc", "average_precision"} {
			if p.Test[k] != m.Test[k] {
				t.Errorf("point %s test %s: sweep %v, run %v", p.ID, k, p.Test[k], m.Test[k])
			}
		}
		cfg, err := os.ReadFile(filepath.Join(dir, p.RunDir, "config.yaml"))
		if err != nil || !strings.Contains(string(cfg), "abu-airport-1.mat") {
			t.Errorf("point %s: the run's config.yaml does not name the scene (%v)", p.ID, err)
		}
	}
	if _, err := SceneSources([]string{filepath.Join(work, "missing.mat")}); err == nil || !strings.Contains(err.Error(), "missing.mat") {
		t.Errorf("a missing scene: %v", err)
	}
}

// A sweep file's data source may be a scene (path relative to the file), but not a scene and
// a data root at once.
func TestSpecFileSceneSource(t *testing.T) {
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "s.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s, err := LoadSpec(write("variants: [drcnn]\ndata: [{name: a, scene: scenes/a.mat}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Data) != 1 || s.Data[0].Scene != filepath.Join(dir, "scenes", "a.mat") {
		t.Errorf("data sources %+v", s.Data)
	}
	if _, err := LoadSpec(write("variants: [drcnn]\ndata: [{name: a, scene: a.mat, root: d}]\n")); err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("a scene with a root: %v", err)
	}
}
