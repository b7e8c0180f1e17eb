package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/sweep"
)

// The sweep command parses its quick form into the same plan as a sweep file, emits the
// Slurm script, and rejects contradictory flags with a clear error. (The sweep package's
// tests run points, faults, kills and a real Slurm.)
func TestSweepCommand(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	quick := filepath.Join(dir, "quick")
	out := mustRun(t, "sweep", "--out", quick, "--emit", "slurm", "--bin", "/opt/spectraclip", "--variant", "drcnn,concrete", "--seeds", "2",
		"--cpus-per-task", "2", "--gpus-per-task", "1", "--slurm-opt", "partition=gpu",
		"data.root="+data, "data.generate_if_missing=true", "data.synth.frames=8", "data.synth.height=32", "data.synth.width=32", "training.optimizer.lr=1e-3,3e-3")
	if !strings.Contains(out, "sweep.sbatch (8 tasks)") {
		t.Errorf("output %q", out)
	}
	script, err := os.ReadFile(filepath.Join(quick, "sweep.sbatch"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"#SBATCH --array=0-7\n", "#SBATCH --gpus-per-task=1\n", "#SBATCH --cpus-per-task=2\n", "#SBATCH --partition=gpu\n",
		"exec /opt/spectraclip sweep --out " + quick + ` --point "$SLURM_ARRAY_TASK_ID"`} {
		if !strings.Contains(string(script), want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	// the emit generated the data once, for the tasks to share
	if _, err := os.Stat(filepath.Join(data, "dataset.yaml")); err != nil {
		t.Errorf("data not prepared: %v", err)
	}
	// the same sweep as a file gives the same points
	file := filepath.Join(dir, "s.yaml")
	src := "variants: [drcnn, concrete]\nseeds: 2\noverrides: [data.root=" + data + ", data.generate_if_missing=true, data.synth.frames=8, data.synth.height=32, data.synth.width=32]\ngrid:\n  training.optimizer.lr: [1e-3, 3e-3]\n"
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	fromFile := filepath.Join(dir, "file")
	mustRun(t, "sweep", "--out", fromFile, "--emit", "slurm", "--bin", "/opt/spectraclip", "-c", file, "--retry-failed")
	if script, _ := os.ReadFile(filepath.Join(fromFile, "sweep.sbatch")); !strings.Contains(string(script), `--point "$SLURM_ARRAY_TASK_ID" --retry-failed`) {
		t.Errorf("--retry-failed does not reach the tasks:\n%s", script)
	}
	var a, b sweep.Plan
	for _, x := range []struct {
		dir string
		p   *sweep.Plan
	}{{quick, &a}, {fromFile, &b}} {
		raw, err := os.ReadFile(filepath.Join(x.dir, sweep.PlanName))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, x.p); err != nil {
			t.Fatal(err)
		}
	}
	if len(a.Points) != 8 || len(b.Points) != 8 {
		t.Fatalf("%d and %d points", len(a.Points), len(b.Points))
	}
	for i := range a.Points {
		if a.Points[i].ID != b.Points[i].ID {
			t.Errorf("point %d: %s (quick) vs %s (file)", i, a.Points[i].ID, b.Points[i].ID)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"sweep", "--out", dir + "/x", "-c", file, "--variant", "drcnn"}, "already names the sweep"},
		{[]string{"sweep", "--out", dir + "/x", "--seeds", "3"}, "need --variant"},
		{[]string{"sweep", "--out", dir + "/x"}, "holds none yet"},
		{[]string{"sweep", "--out", dir + "/x", "--collect"}, "has no plan.json"},
		{[]string{"sweep", "--out", quick, "--variant", "pca"}, "holds a different sweep"},
		{[]string{"sweep", "--out", quick, "--point", "8"}, "has points 0..7"},
		{[]string{"sweep", "--out", quick, "--collect", "--point", "1"}, "exclude each other"},
		{[]string{"sweep", "--out", dir + "/x", "--variant", "drcnn", "--gpus", "0,x"}, "--gpus"},
		{[]string{"sweep", "--out", dir + "/x", "--variant", "drcnn", "--emit", "pbs"}, `--emit "pbs"`},
		{[]string{"sweep", "--out", dir + "/x", "--variant", "drcnn", "training.nope=1,2"}, `unknown key "training.nope"`},
	} {
		_, err := runCLI(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}
