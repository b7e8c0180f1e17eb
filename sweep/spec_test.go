package sweep

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gstat "gonum.org/v1/gonum/stat"
)

func TestExpandIsDeterministicWithStableIDs(t *testing.T) {
	dir := t.TempDir()
	spec := &Spec{Name: "t", Bases: []Base{{Variant: "drcnn"}, {Variant: "concrete"}}, Seeds: []uint64{0, 1, 2},
		Overrides: []string{"training.trainer.max_epochs=1"},
		Grid:      []Axis{{Key: "training.optimizer.lr", Values: []string{"1e-3", "3e-3"}}, {Key: "data.batch_size", Values: []string{"1", "2"}}},
		List:      []Setting{{{Key: "training.optimizer.name", Value: "adam"}}, {{Key: "training.optimizer.name", Value: "sgd"}}}}
	a, err := Expand(spec, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 2 bases × (2 list entries × 2 × 2 grid) × 3 seeds, counted by hand
	if want := 2 * 2 * 2 * 2 * 3; len(a.Points) != want {
		t.Fatalf("%d points, want %d", len(a.Points), want)
	}
	b, err := Expand(spec, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for i, p := range a.Points {
		if p.ID != b.Points[i].ID || p.Index != i {
			t.Fatalf("point %d: id %s vs %s", i, p.ID, b.Points[i].ID)
		}
		if ids[p.ID] {
			t.Fatalf("id %s twice", p.ID)
		}
		ids[p.ID] = true
	}
	// order: base, setting (list entry outermost, then the grid in order), seed
	p := a.Points[1]
	want := []string{"training.trainer.max_epochs=1", "training.optimizer.name=adam", "training.optimizer.lr=1e-3", "data.batch_size=1", "training.seed=1"}
	if strings.Join(p.Overrides, " ") != strings.Join(want, " ") || p.Base.Variant != "drcnn" || *p.Seed != 1 {
		t.Errorf("point 1: %s %v seed %d, want %v", p.Base.Name(), p.Overrides, *p.Seed, want)
	}
	if p.Setting != "training.optimizer.name=adam training.optimizer.lr=1e-3 data.batch_size=1" {
		t.Errorf("setting label %q", p.Setting)
	}
	if got := strings.Join(a.Swept, ","); got != "training.optimizer.name,training.optimizer.lr,data.batch_size" {
		t.Errorf("swept %s", got)
	}
	// A point's id depends on what it runs, not on its position: drop a seed and the
	// remaining points keep their ids; change a fixed override and every id changes.
	spec2 := *spec
	spec2.Seeds = []uint64{2, 0}
	c, err := Expand(&spec2, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Points {
		if !ids[p.ID] {
			t.Errorf("point %s (seed %d) changed its id when the seed list changed", p.ID, *p.Seed)
		}
	}
	spec2.Overrides = []string{"training.trainer.max_epochs=2"}
	d, err := Expand(&spec2, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Points {
		if ids[p.ID] {
			t.Errorf("point %s kept its id with another max_epochs", p.ID)
		}
	}
}

func TestQuickSpec(t *testing.T) {
	s, err := QuickSpec([]string{"drcnn", "concrete"}, nil, "3", []string{"training.optimizer.lr=1e-3,3e-3",
		"training.optimizer.betas=[0.9,0.99],[0.8,0.9]", "training.trainer.max_epochs=1", `+pipeline.x.note="a,b"`})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Seeds) != 3 || s.Seeds[2] != 2 {
		t.Errorf("seeds %v", s.Seeds)
	}
	if len(s.Grid) != 2 || strings.Join(s.Grid[1].Values, "|") != "[0.9,0.99]|[0.8,0.9]" {
		t.Errorf("grid %+v", s.Grid)
	}
	if strings.Join(s.Overrides, " ") != `training.trainer.max_epochs=1 +pipeline.x.note="a,b"` {
		t.Errorf("fixed overrides %q", s.Overrides)
	}
	if s, err := ParseSeeds("4,1,9"); err != nil || len(s) != 3 || s[0] != 4 {
		t.Errorf("seed list: %v %v", s, err)
	}
	for _, bad := range []struct {
		variants []string
		seeds    string
		args     []string
		want     string
	}{
		{[]string{"nope"}, "", nil, `unknown variant "nope"`},
		{nil, "", nil, "no trainrun"},
		{[]string{"drcnn"}, "0", nil, "seeds"},
		{[]string{"drcnn"}, "1,1", nil, "appears twice"},
		{[]string{"drcnn"}, "", []string{"lr"}, "want key=value"},
		{[]string{"drcnn"}, "", []string{"a=[1,2"}, "unbalanced"},
		{[]string{"drcnn"}, "", []string{"a=1,,2"}, "empty value"},
	} {
		_, err := QuickSpec(bad.variants, nil, bad.seeds, bad.args)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v %q %v: error %v, want %q", bad.variants, bad.seeds, bad.args, err, bad.want)
		}
	}
}

func TestLoadSpecFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.yaml")
	src := `name: lr
variants: [drcnn]
seeds: [3, 5]
overrides: [training.trainer.max_epochs=1]
grid:
  training.optimizer.lr: [1e-3, 3.0e-3]
  training.optimizer.name: adam
list:
  - {data.batch_size: 1}
  - {data.batch_size: 2, training.optimizer.betas: [0.8, 0.9]}
data:
  - {name: a, root: data/a}
  - {name: b, root: /abs/b, overrides: [data.generate_if_missing=true]}
metric: iou
`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSpec(p)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "lr" || s.Metric != "iou" || len(s.Bases) != 1 || len(s.Seeds) != 2 || s.Seeds[1] != 5 {
		t.Errorf("spec %+v", s)
	}
	if len(s.Grid) != 2 || s.Grid[0].Key != "training.optimizer.lr" || strings.Join(s.Grid[0].Values, ",") != "1e-3,3.0e-3" || s.Grid[1].Values[0] != "adam" {
		t.Errorf("grid %+v (values must keep their text, keys their order)", s.Grid)
	}
	if len(s.List) != 2 || s.List[1][1].Value != "[0.8, 0.9]" {
		t.Errorf("list %+v", s.List)
	}
	if s.Data[0].Root != filepath.Join(dir, "data/a") || s.Data[1].Root != "/abs/b" || s.Data[1].Overrides[0] != "data.generate_if_missing=true" {
		t.Errorf("data %+v", s.Data)
	}
	// bad files name the file, the line and the key
	for _, c := range []struct{ src, want string }{
		{"variants: [drcnn]\nsed: 3\n", "s.yaml:2: sed: unknown key"},
		{"variants: [drcnn]\ngrid: [1, 2]\n", "s.yaml:2: grid: want a mapping"},
		{"variants: [drcnn]\ndata:\n  - {name: a, rot: x}\n", `unknown key "rot"`},
		{"variants: [drcnn]\nseeds: many\n", "s.yaml:2: seeds"},
		{"trainruns: [x.yaml]\nvariants: []\n", ""},
	} {
		if err := os.WriteFile(p, []byte(c.src), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadSpec(p)
		if c.want == "" {
			if err != nil {
				t.Errorf("%q: %v", c.src, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.src, err, c.want)
		}
	}
}

func TestExpandRejectsBadOverridesBeforeRunning(t *testing.T) {
	s, err := QuickSpec([]string{"drcnn"}, nil, "", []string{"training.optimizer.lrr=1e-3,3e-3"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Expand(s, t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "point 0") || !strings.Contains(err.Error(), `unknown key "training.optimizer.lrr"`) {
		t.Errorf("error %v", err)
	}
	s, _ = QuickSpec([]string{"drcnn"}, nil, "", []string{"training.optimizer.lr=0.5,5"})
	_, err = Expand(s, t.TempDir(), nil)
	if err == nil || !strings.Contains(err.Error(), "point 1") || !strings.Contains(err.Error(), "training.optimizer.lr") {
		t.Errorf("error %v", err)
	}
}

// The mean ± std of a setting agree with gonum's (n-1) on random values.
func TestStatAgainstGonum(t *testing.T) {
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), 7))
	for n := 1; n < 8; n++ {
		v := make([]float64, n)
		for i := range v {
			v[i] = r.NormFloat64()*3 + 1
		}
		s := stat(v)
		m, sd := gstat.MeanStdDev(v, nil)
		if math.Abs(s.Mean-m) > 1e-12 || s.N != n {
			t.Errorf("n=%d mean %v vs %v", n, s.Mean, m)
		}
		if n == 1 {
			if s.Std != nil {
				t.Errorf("n=1: std %v, want none", *s.Std)
			}
			continue
		}
		if math.Abs(*s.Std-sd) > 1e-12 {
			t.Errorf("n=%d std %v vs %v", n, *s.Std, sd)
		}
	}
}
