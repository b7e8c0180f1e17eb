package sweep

import (
	"strings"
	"testing"
)

// report.md warns when the finished runs used different thread counts (their results then
// differ in the summation order, see the --workers measurement in the README).
func TestReportNotesMixedThreads(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	row := func(i, threads int) Row {
		return Row{Index: i, ID: "p", Base: "drcnn", Setting: "default", Status: Done, Threads: threads,
			Test: map[string]float64{"iou": 0.5}, TrainSeconds: f(1), InferenceFPS: f(2)}
	}
	r := &Results{Name: "t", Metric: "iou", Metrics: []string{"iou"}, Points: []Row{row(0, 1), row(1, 1)}}
	if strings.Contains(r.Markdown(), "different LibTorch thread counts") {
		t.Errorf("note without a reason:\n%s", r.Markdown())
	}
	r.Points[1].Threads = 2
	if !strings.Contains(r.Markdown(), "different LibTorch thread counts") {
		t.Errorf("no note for threads 1 and 2:\n%s", r.Markdown())
	}
}

// A point recorded as done whose run directory was deleted is pending again, not an error
// that stops the results.
func TestDonePointWithoutItsRunIsPending(t *testing.T) {
	dir := t.TempDir()
	s, err := QuickSpec([]string{"pca"}, nil, "2", nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Expand(s, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := &State{Index: 0, ID: plan.Points[0].ID, Status: Done, Attempts: 1, Completions: 1}
	if err := st.save(dir); err != nil {
		t.Fatal(err)
	}
	res, err := Collect(dir, plan)
	if err != nil {
		t.Fatal(err)
	}
	if res.Points[0].Status != Pending || !strings.Contains(res.Points[0].Error, "metrics.json is gone") || res.Points[1].Status != Pending {
		t.Errorf("rows %+v", res.Points)
	}
}
