package nodes

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/spectraclip/spectraclip/torch"
)

// Test-only node types. They are registered into a private registry by testRegistry so
// that they never leak into Builtins.

// testMixer is a 1×1 convolution over channels-last data: out = x·W + b, with W [C,O]
// drawn from a seeded generator. It has parameters (Trainable, Stateful).
type testMixer struct {
	Base
	in, out int
	seed    int
	w, b    *torch.Tensor
	frozen  bool
	params  map[string]any
}

func newTestMixer(name string, params map[string]any) (Node, error) {
	r := NewParamReader(name, params)
	in := r.Int("in_channels", 4)
	out := r.Int("out_channels", 3)
	seed := r.Int("seed", 1)
	r.Check(in > 0 && out > 0, "in_channels", "channel counts must be positive")
	if err := r.Done(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	wv := make([]float32, in*out)
	for i := range wv {
		wv[i] = float32(rng.NormFloat64())
	}
	bv := make([]float32, out)
	for i := range bv {
		bv[i] = float32(rng.NormFloat64())
	}
	s := torch.NewScope()
	defer s.Close()
	w := s.FromFloat32(wv, int64(in), int64(out))
	b := s.FromFloat32(bv, int64(out))
	if s.Err() != nil {
		return nil, s.Err()
	}
	s.Keep(w, b)
	m := &testMixer{Base: Base{NodeName: name, TypeName: "TestMixer"}, in: in, out: out, seed: seed, w: w, b: b, frozen: true, params: r.Resolved()}
	return m, nil
}

func (m *testMixer) Inputs() []PortSpec {
	return []PortSpec{{Name: "data", DType: torch.Float32, Shape: Shape("B", "H", "W", "in_channels")}}
}
func (m *testMixer) Outputs() []PortSpec {
	return []PortSpec{{Name: "mixed", DType: torch.Float32, Shape: Shape("B", "H", "W", "out_channels")}}
}
func (m *testMixer) Stages() []Stage        { return nil }
func (m *testMixer) Params() map[string]any { return m.params }
func (m *testMixer) ResolveDim(n string) (int64, bool) {
	switch n {
	case "in_channels":
		return int64(m.in), true
	case "out_channels":
		return int64(m.out), true
	}
	return 0, false
}
func (m *testMixer) Forward(ctx *Context, in map[string]any) (map[string]any, error) {
	x := in["data"].(*torch.Tensor)
	s := ctx.Scope
	return map[string]any{"mixed": s.Add(s.Matmul(x, m.w), m.b)}, s.Err()
}
func (m *testMixer) Parameters() []NamedTensor {
	return []NamedTensor{{Name: "weight", Tensor: m.w}, {Name: "bias", Tensor: m.b}}
}
func (m *testMixer) Freeze(f bool) error {
	m.frozen = f
	if err := m.w.SetRequiresGrad(!f); err != nil {
		return err
	}
	return m.b.SetRequiresGrad(!f)
}
func (m *testMixer) Frozen() bool         { return m.frozen }
func (m *testMixer) State() []NamedTensor { return m.Parameters() }
func (m *testMixer) LoadState(st map[string]*torch.Tensor) error {
	return loadInto(m.Name(), st, map[string]*torch.Tensor{"weight": m.w, "bias": m.b})
}
func (m *testMixer) Close() { m.w.Free(); m.b.Free() }

// loadInto copies saved tensors into a node's own tensors without recording autograd.
func loadInto(node string, st map[string]*torch.Tensor, dst map[string]*torch.Tensor) error {
	s := torch.NewScope()
	defer s.Close()
	for k, d := range dst {
		src, ok := st[k]
		if !ok {
			return fmt.Errorf("node %q: state %q missing", node, k)
		}
		s.NoGrad(func() { s.Copy_(d, src) })
	}
	return s.Err()
}

// testScaler standardises each channel with a mean and std fitted over the training
// batches (a Fitter with buffers).
type testScaler struct {
	Base
	c         int
	sum, sq   []float64
	n         float64
	mean, std *torch.Tensor
	fitted    bool
}

func newTestScaler(name string, params map[string]any) (Node, error) {
	r := NewParamReader(name, params)
	c := r.Int("channels", 3)
	if err := r.Done(); err != nil {
		return nil, err
	}
	s := torch.NewScope()
	defer s.Close()
	mean := s.Zeros([]int64{int64(c)}, torch.Float32, torch.CPU)
	std := s.Ones([]int64{int64(c)}, torch.Float32, torch.CPU)
	if s.Err() != nil {
		return nil, s.Err()
	}
	s.Keep(mean, std)
	return &testScaler{Base: Base{NodeName: name, TypeName: "TestScaler"}, c: c, mean: mean, std: std}, nil
}

func (n *testScaler) Inputs() []PortSpec {
	return []PortSpec{{Name: "x", DType: torch.Float32, Shape: Shape("B", "H", "W", "-1")}}
}
func (n *testScaler) Outputs() []PortSpec {
	return []PortSpec{{Name: "y", DType: torch.Float32, Shape: Shape("B", "H", "W", "-1")}}
}
func (n *testScaler) Stages() []Stage        { return nil }
func (n *testScaler) Params() map[string]any { return map[string]any{"channels": n.c} }
func (n *testScaler) Forward(ctx *Context, in map[string]any) (map[string]any, error) {
	if !n.fitted {
		return nil, fmt.Errorf("not fitted")
	}
	s := ctx.Scope
	x := in["x"].(*torch.Tensor)
	return map[string]any{"y": s.Div(s.Sub(x, n.mean), n.std)}, s.Err()
}
func (n *testScaler) RequiresFit() bool { return true }
func (n *testScaler) FitReset() error {
	n.sum, n.sq, n.n = make([]float64, n.c), make([]float64, n.c), 0
	return nil
}
func (n *testScaler) FitBatch(ctx *Context, in map[string]any) error {
	v, err := in["x"].(*torch.Tensor).Float32s()
	if err != nil {
		return err
	}
	for i, e := range v {
		n.sum[i%n.c] += float64(e)
		n.sq[i%n.c] += float64(e) * float64(e)
	}
	n.n += float64(len(v) / n.c)
	return nil
}
func (n *testScaler) FitFinish() error {
	m := make([]float32, n.c)
	sd := make([]float32, n.c)
	for i := range m {
		mu := n.sum[i] / n.n
		m[i] = float32(mu)
		sd[i] = float32(math.Sqrt(n.sq[i]/n.n - mu*mu))
	}
	if err := torch.CopyFrom(n.mean, m); err != nil {
		return err
	}
	if err := torch.CopyFrom(n.std, sd); err != nil {
		return err
	}
	n.fitted = true
	return nil
}
func (n *testScaler) Fitted() bool { return n.fitted }
func (n *testScaler) State() []NamedTensor {
	return []NamedTensor{{Name: "mean", Tensor: n.mean}, {Name: "std", Tensor: n.std}}
}
func (n *testScaler) LoadState(st map[string]*torch.Tensor) error {
	if err := loadInto(n.Name(), st, map[string]*torch.Tensor{"mean": n.mean, "std": n.std}); err != nil {
		return err
	}
	n.fitted = true
	return nil
}
func (n *testScaler) Close() { n.mean.Free(); n.std.Free() }

// testGeneric is a configurable stateless node for graph tests: it copies its first
// input tensor (or makes a small tensor) into each output and records that it ran.
type testGeneric struct {
	Base
	ins, outs []PortSpec
	stages    []Stage
	calls     *[]string
	lastIn    map[string]any
}

func (n *testGeneric) Inputs() []PortSpec     { return n.ins }
func (n *testGeneric) Outputs() []PortSpec    { return n.outs }
func (n *testGeneric) Stages() []Stage        { return n.stages }
func (n *testGeneric) Params() map[string]any { return nil }
func (n *testGeneric) Forward(ctx *Context, in map[string]any) (map[string]any, error) {
	if n.calls != nil {
		*n.calls = append(*n.calls, n.Name())
	}
	n.lastIn = in
	out := map[string]any{}
	for _, o := range n.outs {
		if o.Kind == KindValue {
			out[o.Name] = n.Name()
			continue
		}
		out[o.Name] = ctx.Scope.Full([]int64{1, 2, 2, 1}, 1, o.DType, torch.CPU)
	}
	return out, ctx.Scope.Err()
}

func gen(name string, ins, outs []PortSpec, calls *[]string, stages ...Stage) *testGeneric {
	return &testGeneric{Base: Base{NodeName: name, TypeName: "TestGeneric"}, ins: ins, outs: outs, stages: stages, calls: calls}
}

// testRegistry returns a registry with the test node types.
func testRegistry() *Registry {
	r := NewRegistry()
	for _, ti := range []TypeInfo{
		{Name: "TestMixer", Aliases: []string{"tests.TestMixer"}, Factory: newTestMixer},
		{Name: "TestScaler", Factory: newTestScaler},
	} {
		if err := r.Add(ti); err != nil {
			panic(err)
		}
	}
	return r
}
