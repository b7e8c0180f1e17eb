package nodes

import (
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/torch"
)

func tport(name string, dt torch.DType, dims ...string) PortSpec {
	return PortSpec{Name: name, DType: dt, Shape: Shape(dims...)}
}

func mustAdd(t *testing.T, p *Pipeline, n Node) string {
	t.Helper()
	name, err := p.Add(n)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func mustNew(t *testing.T, r *Registry, typ, name string, params map[string]any) Node {
	t.Helper()
	n, err := r.New(typ, name, params)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error containing %q, got nil", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not contain %q", err, p)
		}
	}
}

func TestAddUniqueNames(t *testing.T) {
	p := NewPipeline("p", nil)
	got := []string{
		mustAdd(t, p, gen("a", nil, nil, nil)),
		mustAdd(t, p, gen("a", nil, nil, nil)),
		mustAdd(t, p, gen("a", nil, nil, nil)),
		mustAdd(t, p, gen("b-5", nil, nil, nil)),
		mustAdd(t, p, gen("b", nil, nil, nil)),
		mustAdd(t, p, gen("b", nil, nil, nil)),
	}
	want := []string{"a", "a-1", "a-2", "b-5", "b", "b-6"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("names %v, want %v", got, want)
		}
	}
	if n, ok := p.Node("a-2"); !ok || n.Name() != "a-2" {
		t.Fatalf("Node(a-2) = %v, %v", n, ok)
	}
	wantErr(t, p.AddStrict(gen("a", nil, nil, nil)), `"a" already exists`)
}

func TestConnectChecks(t *testing.T) {
	r := testRegistry()
	build := func() *Pipeline {
		p := NewPipeline("p", r)
		mustAdd(t, p, gen("f32", nil, []PortSpec{tport("out", torch.Float32, "B", "H", "W", "C"), {Name: "meta", Kind: KindValue}}, nil))
		mustAdd(t, p, gen("i64", nil, []PortSpec{tport("out", torch.Int64, "B", "H", "W", "C")}, nil))
		mustAdd(t, p, gen("three", nil, []PortSpec{tport("out", torch.Float32, "-1", "-1", "-1", "3")}, nil))
		mustAdd(t, p, gen("rank3", nil, []PortSpec{tport("out", torch.Float32, "B", "H", "W")}, nil))
		mustAdd(t, p, gen("anyd", nil, []PortSpec{{Name: "out", AnyDType: true, Shape: Shape("B", "H", "W", "C")}}, nil))
		mustAdd(t, p, gen("sink", []PortSpec{tport("in", torch.Float32, "B", "H", "W", "4")}, []PortSpec{tport("out", torch.Float32, "B", "H", "W", "4")}, nil))
		mustAdd(t, p, gen("list", []PortSpec{{Name: "items", Kind: KindValue, Variadic: true}}, nil, nil))
		mustAdd(t, p, mustNew(t, r, "TestMixer", "m3", map[string]any{"in_channels": 4, "out_channels": 3}))
		mustAdd(t, p, mustNew(t, r, "TestMixer", "m4", map[string]any{"in_channels": 4, "out_channels": 2}))
		return p
	}
	cases := []struct {
		name     string
		pre      [][2]string
		from, to string
		want     []string // substrings; nil means success
	}{
		{"ok wildcard and symbolic", nil, "f32.out", "sink.in", nil},
		{"reference forms", nil, "f32.outputs.out", "sink.inputs.in", nil},
		{"dtype", nil, "i64.out", "sink.in", []string{"connect i64.out -> sink.in: dtype int64 vs float32"}},
		{"any dtype", nil, "anyd.out", "sink.in", nil},
		{"fixed dims", nil, "three.out", "sink.in", []string{"connect three.out -> sink.in", "dim 3", "3", "4"}},
		{"rank", nil, "rank3.out", "sink.in", []string{"rank 3", "vs 4"}},
		{"resolved symbolic dims", nil, "m3.mixed", "m4.data", []string{"connect m3.mixed -> m4.data", "out_channels=3 vs in_channels=4"}},
		{"resolved symbolic dims ok", nil, "sink.out", "m4.data", nil},
		{"kind", nil, "f32.meta", "sink.in", []string{"kind value vs tensor"}},
		{"unknown output port", nil, "f32.nope", "sink.in", []string{`node "f32" has no output port "nope" (outputs: out, meta)`}},
		{"unknown input port", nil, "f32.out", "sink.nope", []string{`no input port "nope" (inputs: in)`}},
		{"unknown node", nil, "ghost.out", "sink.in", []string{`no node "ghost"`, "sink"}},
		{"wrong side", nil, "f32.inputs.out", "sink.in", []string{"not the outputs side"}},
		{"second into non-variadic", [][2]string{{"f32.out", "sink.in"}}, "anyd.out", "sink.in", []string{"already fed by f32.out", "not variadic"}},
		{"variadic takes many", [][2]string{{"f32.meta", "list.items"}}, "f32.meta", "list.items", []string{"already connected"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := build()
			defer p.Close()
			for _, e := range c.pre {
				if err := p.Connect(e[0], e[1]); err != nil {
					t.Fatal(err)
				}
			}
			err := p.Connect(c.from, c.to)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, c.want...)
		})
	}
	t.Run("cycle proper", func(t *testing.T) {
		p := NewPipeline("c", nil)
		mustAdd(t, p, gen("a", []PortSpec{{Name: "in", Kind: KindValue, Variadic: true}}, []PortSpec{{Name: "out", Kind: KindValue}}, nil))
		mustAdd(t, p, gen("b", []PortSpec{{Name: "in", Kind: KindValue}}, []PortSpec{{Name: "out", Kind: KindValue}}, nil))
		if err := p.Connect("a.out", "b.in"); err != nil {
			t.Fatal(err)
		}
		wantErr(t, p.Connect("b.out", "a.in"), "cycle")
		wantErr(t, p.Connect("a.out", "a.in"), "cycle")
	})
}

// mixerRef computes x·W + b in float64: the independent reference of TestMixer.
func mixerRef(x []float32, w, b []float32, c, o int) []float64 {
	rows := len(x) / c
	out := make([]float64, rows*o)
	for r := 0; r < rows; r++ {
		for j := 0; j < o; j++ {
			acc := float64(b[j])
			for k := 0; k < c; k++ {
				acc += float64(x[r*c+k]) * float64(w[k*o+j])
			}
			out[r*o+j] = acc
		}
	}
	return out
}

func randData(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64()*2 + 0.5)
	}
	return v
}

// buildMixScale makes data → mixer(4→3) → scaler, with the scaler fitted on three random
// batches, and returns the float64 reference mean/std of the mixer outputs it saw.
func buildMixScale(t *testing.T, r *Registry, rng *rand.Rand) (*Pipeline, []float64, []float64) {
	t.Helper()
	p := NewPipeline("mixscale", r)
	mustAdd(t, p, mustNew(t, r, "TestMixer", "mixer", map[string]any{"in_channels": 4, "out_channels": 3, "seed": 11}))
	mustAdd(t, p, mustNew(t, r, "TestScaler", "scaler", map[string]any{"channels": 3}))
	if err := p.Connect("mixer.mixed", "scaler.x"); err != nil {
		t.Fatal(err)
	}
	p.SetBatchKeys([]string{"data"})
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	mn, _ := p.Node("mixer")
	m := mn.(*testMixer)
	wv, _ := m.w.Float32s()
	bv, _ := m.b.Float32s()
	sn, _ := p.Node("scaler")
	sc := sn.(Fitter)
	sc.FitReset()
	sum, sq, cnt := make([]float64, 3), make([]float64, 3), 0.0
	for i := 0; i < 3; i++ {
		s := torch.NewScope()
		x := randData(rng, 2*5*6*4)
		ctx := &Context{Stage: StageTrain, Scope: s}
		in, err := p.FitInputs(ctx, map[string]any{"data": s.FromFloat32(x, 2, 5, 6, 4)}, "scaler")
		if err != nil {
			t.Fatal(err)
		}
		if err := sc.FitBatch(ctx, in); err != nil {
			t.Fatal(err)
		}
		ref := mixerRef(x, wv, bv, 4, 3)
		for j, v := range ref {
			sum[j%3] += v
			sq[j%3] += v * v
		}
		cnt += float64(len(ref) / 3)
		s.Close()
	}
	if err := sc.FitFinish(); err != nil {
		t.Fatal(err)
	}
	mean, std := make([]float64, 3), make([]float64, 3)
	for j := range mean {
		mean[j] = sum[j] / cnt
		std[j] = math.Sqrt(sq[j]/cnt - mean[j]*mean[j])
	}
	return p, mean, std
}

func TestRunAgainstFloat64(t *testing.T) {
	r := testRegistry()
	rng := rand.New(rand.NewPCG(3, 4))
	p, mean, std := buildMixScale(t, r, rng)
	defer p.Close()
	mn, _ := p.Node("mixer")
	wv, _ := mn.(*testMixer).w.Float32s()
	bv, _ := mn.(*testMixer).b.Float32s()
	s := torch.NewScope()
	defer s.Close()
	x := randData(rng, 3*4*5*4)
	outs, err := p.Run(&Context{Stage: StageTest, Scope: s}, map[string]any{"data": s.FromFloat32(x, 3, 4, 5, 4)}, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	y, err := outs.Tensor("scaler", "y")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := y.Float32s()
	ref := mixerRef(x, wv, bv, 4, 3)
	const tol = 1e-4 // float32 accumulation of 4 products, then a standardisation
	for i, v := range ref {
		want := (v - mean[i%3]) / std[i%3]
		if math.Abs(float64(got[i])-want) > tol*(1+math.Abs(want)) {
			t.Fatalf("element %d: got %v, want %v", i, got[i], want)
		}
	}
	if _, ok := outs.Get("mixer", "mixed"); !ok {
		t.Fatal("mixer output missing from Outputs")
	}
	if _, err := outs.Tensor("ghost", "y"); err == nil {
		t.Fatal("want an error for a node that did not run")
	}
	// UpTo runs only the ancestors.
	outs, err = p.Run(&Context{Stage: StageTest, Scope: s}, map[string]any{"data": s.FromFloat32(x, 3, 4, 5, 4)}, RunOptions{UpTo: "scaler"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := outs["scaler"]; ok || outs["mixer"] == nil {
		t.Fatalf("UpTo scaler ran %v", outs)
	}
	outs, err = p.Run(&Context{Stage: StageTest, Scope: s}, map[string]any{"data": s.FromFloat32(x, 3, 4, 5, 4)}, RunOptions{Only: []string{"mixer"}})
	if err != nil || len(outs) != 1 || outs["mixer"] == nil {
		t.Fatalf("Only mixer: %v %v", outs, err)
	}
}

func TestSaveLoadBitIdentical(t *testing.T) {
	r := testRegistry()
	rng := rand.New(rand.NewPCG(5, 6))
	p, _, _ := buildMixScale(t, r, rng)
	defer p.Close()
	p.Metadata["description"] = "test pipeline"
	dir := t.TempDir()
	path := filepath.Join(dir, "pipe.yaml")
	if err := p.Save(path); err != nil {
		t.Fatal(err)
	}
	q, err := Load(path, r, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.Metadata["description"] != "test pipeline" || strings.Join(q.BatchKeys(), ",") != "data" {
		t.Fatalf("metadata %v batch keys %v", q.Metadata, q.BatchKeys())
	}
	s := torch.NewScope()
	defer s.Close()
	x := randData(rng, 2*3*3*4)
	run := func(pp *Pipeline) []float32 {
		outs, err := pp.Run(&Context{Stage: StageInference, Scope: s}, map[string]any{"data": s.FromFloat32(x, 2, 3, 3, 4)}, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		y, err := outs.Tensor("scaler", "y")
		if err != nil {
			t.Fatal(err)
		}
		v, _ := y.Float32s()
		return v
	}
	a, b := run(p), run(q)
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			t.Fatalf("element %d: %v before save, %v after load", i, a[i], b[i])
		}
	}
	// The YAML names types and connections as documented.
	y, _ := os.ReadFile(path)
	for _, want := range []string{"type: TestMixer", "source: mixer.mixed", "target: scaler.x", "batch_keys:"} {
		if !strings.Contains(string(y), want) {
			t.Fatalf("saved YAML lacks %q:\n%s", want, y)
		}
	}
	// Weights for a node that is not in the YAML are rejected, as are missing ones.
	st := map[string]*torch.Tensor{"mixer/weight": s.FromFloat32(make([]float32, 12), 4, 3), "extra/w": s.FromFloat32([]float32{1}, 1)}
	if err := torch.SaveTensors(WeightsPath(path), st); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path, r, torch.CPU)
	wantErr(t, err, "missing keys [mixer/bias, scaler/mean, scaler/std]", "unexpected keys [extra/w]")
	// Unknown YAML keys are rejected.
	os.WriteFile(path, append(y, []byte("bogus: 1\n")...), 0o644)
	_, err = Load(path, r, torch.CPU)
	wantErr(t, err, "bogus")
}

func TestStagesAndSkipping(t *testing.T) {
	var calls []string
	p := NewPipeline("stages", nil)
	f := func(n string) []PortSpec { return []PortSpec{{Name: n, Kind: KindValue}} }
	mustAdd(t, p, gen("src", f("x"), f("out"), &calls))
	mustAdd(t, p, gen("trainonly", f("in"), f("out"), &calls, StageTrain))
	mustAdd(t, p, gen("needs", f("in"), f("out"), &calls))
	mustAdd(t, p, gen("optional", []PortSpec{{Name: "in", Kind: KindValue, Optional: true}}, f("out"), &calls))
	mustAdd(t, p, gen("collect", []PortSpec{{Name: "items", Kind: KindValue, Variadic: true}}, nil, &calls))
	for _, e := range [][2]string{{"src.out", "trainonly.in"}, {"trainonly.out", "needs.in"}, {"trainonly.out", "optional.in"},
		{"src.out", "collect.items"}, {"optional.out", "collect.items"}, {"needs.out", "collect.items"}} {
		if err := p.Connect(e[0], e[1]); err != nil {
			t.Fatal(err)
		}
	}
	s := torch.NewScope()
	defer s.Close()
	for _, c := range []struct {
		stage Stage
		ran   string
		items int
	}{
		{StageTrain, "src,trainonly,needs,optional,collect", 3},
		{StageVal, "src,optional,collect", 2},
	} {
		calls = nil
		if _, err := p.Run(&Context{Stage: c.stage, Scope: s}, map[string]any{"x": 1}, RunOptions{}); err != nil {
			t.Fatal(err)
		}
		if strings.Join(calls, ",") != c.ran {
			t.Fatalf("stage %s ran %v, want %s", c.stage, calls, c.ran)
		}
		n, _ := p.Node("collect")
		items := n.(*testGeneric).lastIn["items"].([]any)
		if len(items) != c.items || items[0] != "src" {
			t.Fatalf("stage %s: variadic got %v", c.stage, items)
		}
	}
	_, err := p.Run(&Context{Stage: StageVal, Scope: s}, map[string]any{}, RunOptions{})
	wantErr(t, err, `node "src"`, `required input "x" is missing`)
	wantErr(t, p.Validate(), `node "src": required input "x"`)
	p.SetBatchKeys([]string{"x"})
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestRuntimeValidation(t *testing.T) {
	p := NewPipeline("v", nil)
	mustAdd(t, p, gen("n", []PortSpec{tport("img", torch.Float32, "B", "H", "W", "3"), tport("mask", torch.Bool, "B", "H", "W", "1")}, nil, nil))
	s := torch.NewScope()
	defer s.Close()
	img := s.Zeros([]int64{2, 4, 4, 3}, torch.Float32, torch.CPU)
	cases := []struct {
		name  string
		batch map[string]any
		want  []string
	}{
		{"ok", map[string]any{"img": img, "mask": s.Zeros([]int64{2, 4, 4, 1}, torch.Bool, torch.CPU)}, nil},
		{"dtype", map[string]any{"img": s.Zeros([]int64{2, 4, 4, 3}, torch.Int64, torch.CPU), "mask": s.Zeros([]int64{2, 4, 4, 1}, torch.Bool, torch.CPU)}, []string{`node "n": input "img": expected dtype float32, got int64`}},
		{"rank", map[string]any{"img": s.Zeros([]int64{4, 4, 3}, torch.Float32, torch.CPU), "mask": s.Zeros([]int64{2, 4, 4, 1}, torch.Bool, torch.CPU)}, []string{`input "img"`, "expected rank 4", "[4 4 3]"}},
		{"fixed dim", map[string]any{"img": s.Zeros([]int64{2, 4, 4, 5}, torch.Float32, torch.CPU), "mask": s.Zeros([]int64{2, 4, 4, 1}, torch.Bool, torch.CPU)}, []string{`input "img"`, "expected 3, got 5"}},
		{"symbolic consistency", map[string]any{"img": img, "mask": s.Zeros([]int64{2, 5, 4, 1}, torch.Bool, torch.CPU)}, []string{`input "mask"`, "H", "img had H=4"}},
		{"not a tensor", map[string]any{"img": 3.0, "mask": s.Zeros([]int64{2, 4, 4, 1}, torch.Bool, torch.CPU)}, []string{`input "img": want a tensor, got float64`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := p.Run(&Context{Stage: StageTest, Scope: s}, c.batch, RunOptions{})
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantErr(t, err, c.want...)
		})
	}
	// An output that breaks its spec is reported with the node and the port.
	q := NewPipeline("o", nil)
	mustAdd(t, q, gen("bad", nil, []PortSpec{tport("out", torch.Float32, "1", "2", "2", "3")}, nil))
	_, err := q.Run(&Context{Stage: StageTest, Scope: s}, nil, RunOptions{})
	wantErr(t, err, `node "bad": output "out"`, "expected 3, got 1")
}

func TestFreezeParameters(t *testing.T) {
	r := testRegistry()
	p := NewPipeline("f", r)
	defer p.Close()
	mustAdd(t, p, mustNew(t, r, "TestMixer", "mixer", nil))
	mustAdd(t, p, mustNew(t, r, "TestScaler", "scaler", nil))
	if n := len(p.Parameters()); n != 0 {
		t.Fatalf("frozen mixer gave %d parameters", n)
	}
	wantErr(t, p.Unfreeze("mixer", "ghost"), `"ghost": no such node`, "mixer, scaler")
	wantErr(t, p.Unfreeze("scaler"), "no trainable parameters")
	if err := p.Unfreeze("mixer"); err != nil {
		t.Fatal(err)
	}
	ps := p.Parameters()
	if len(ps) != 2 || ps[0].Name != "mixer.weight" || ps[1].Name != "mixer.bias" || !ps[0].Tensor.RequiresGrad() {
		t.Fatalf("parameters %v", ps)
	}
	if err := p.Freeze("mixer"); err != nil {
		t.Fatal(err)
	}
	if len(p.Parameters()) != 0 {
		t.Fatal("parameters after freeze")
	}
}

func TestDOTAndDescribe(t *testing.T) {
	r := testRegistry()
	p := NewPipeline("viz", r)
	defer p.Close()
	mustAdd(t, p, mustNew(t, r, "TestMixer", "mixer", nil))
	mustAdd(t, p, mustNew(t, r, "TestScaler", "scaler", nil))
	if err := p.Connect("mixer.mixed", "scaler.x"); err != nil {
		t.Fatal(err)
	}
	p.SetBatchKeys([]string{"data"})
	dot := p.DOT()
	for _, want := range []string{`"mixer":out_mixed -> "scaler":in_x`, "<in_data>", "TestScaler"} {
		if !strings.Contains(dot, want) {
			t.Fatalf("DOT lacks %q:\n%s", want, dot)
		}
	}
	desc := p.Describe()
	for _, want := range []string{"1. mixer (TestMixer) [all stages]", "<- batch[data]", "<- mixer.mixed", "out y"} {
		if !strings.Contains(desc, want) {
			t.Fatalf("Describe lacks %q:\n%s", want, desc)
		}
	}
	if path, err := exec.LookPath("dot"); err == nil {
		cmd := exec.Command(path, "-Tsvg")
		cmd.Stdin = strings.NewReader(dot)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("graphviz rejects the DOT: %v\n%s", err, out)
		}
	} else {
		t.Log("graphviz not installed: DOT syntax not checked by dot")
	}
}

func TestDecodePipelineConfig(t *testing.T) {
	r := testRegistry()
	m := map[string]any{
		"name":        "cfg",
		"nodes":       []any{map[string]any{"name": "mixer", "type": "tests.TestMixer", "params": map[string]any{"out_channels": 2}}},
		"connections": []any{},
	}
	cfg, err := DecodePipelineConfig(m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := FromConfig(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if n, ok := p.Node("mixer"); !ok || n.(*testMixer).out != 2 {
		t.Fatal("mixer not built from config")
	}
	m["nodes"] = []any{map[string]any{"name": "mixer", "kind": "TestMixer"}}
	_, err = DecodePipelineConfig(m)
	wantErr(t, err, "kind")
	_, err = FromConfig(PipelineConfig{Name: "x", Nodes: []NodeConfig{{Name: "m", Type: "TestMixer", Params: map[string]any{"bogus": 1}}}}, r)
	wantErr(t, err, `node "m"`, "bogus")
}
