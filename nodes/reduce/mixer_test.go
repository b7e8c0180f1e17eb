package reduce

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// goMixer is the float64 reference of the DRCNN forward on channels-last pixels.
type goMixer struct {
	scheme []int
	w, b   [][]float64 // w[l] is [out*in] row-major
	slope  float64
	eps    float64
}

func (m *goMixer) forward(x []float64, bsz, hw int) []float64 {
	cur := x
	L := len(m.scheme) - 1
	for l := 0; l < L; l++ {
		in, out := m.scheme[l], m.scheme[l+1]
		nxt := make([]float64, bsz*hw*out)
		for p := 0; p < bsz*hw; p++ {
			for o := 0; o < out; o++ {
				v := m.b[l][o]
				for i := 0; i < in; i++ {
					v += m.w[l][o*in+i] * cur[p*in+i]
				}
				if l < L-1 && v < 0 {
					v *= m.slope
				}
				nxt[p*out+o] = v
			}
		}
		cur = nxt
	}
	out := m.scheme[L]
	for b := 0; b < bsz; b++ {
		for o := 0; o < out; o++ {
			lo, hi := math.Inf(1), math.Inf(-1)
			for p := 0; p < hw; p++ {
				v := cur[(b*hw+p)*out+o]
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
			for p := 0; p < hw; p++ {
				i := (b*hw+p)*out + o
				cur[i] = math.Min(1, math.Max(0, (cur[i]-lo)/math.Max(hi-lo, m.eps)))
			}
		}
	}
	return cur
}

func TestMixerForwardAndGradient(t *testing.T) {
	const bsz, h, w = 2, 4, 5
	scheme := []int{6, 4, 3}
	rng := rand.New(rand.NewPCG(5, 6))
	n := mustNode(t, "cuvis_ai.node.channel_mixer.LearnableChannelMixer", map[string]any{
		"input_channels": 6, "output_channels": 3, "reduction_scheme": []any{6, 4, 3},
		"leaky_relu_negative_slope": 0.1, "dtype": "float64", "seed": 7})
	ref := &goMixer{scheme: scheme, slope: 0.1, eps: 1e-6}
	st := map[string]*torch.Tensor{}
	s := torch.NewScope()
	defer s.Close()
	for l := 0; l+1 < len(scheme); l++ {
		in, out := scheme[l], scheme[l+1]
		wv, bv := make([]float64, in*out), make([]float64, out)
		for i := range wv {
			wv[i] = rng.NormFloat64()
		}
		for i := range bv {
			bv[i] = rng.NormFloat64()
		}
		ref.w, ref.b = append(ref.w, wv), append(ref.b, bv)
		st[fmtName(l, "weight")] = s.FromFloat64(wv, int64(out), int64(in), 1, 1)
		st[fmtName(l, "bias")] = s.FromFloat64(bv, int64(out))
	}
	if err := n.(nodes.Stateful).LoadState(st); err != nil {
		t.Fatal(err)
	}
	x := make([]float64, bsz*h*w*6)
	for i := range x {
		x[i] = rng.Float64()
	}
	r := make([]float64, bsz*h*w*3)
	for i := range r {
		r[i] = rng.NormFloat64()
	}
	loss := func(m *goMixer) float64 {
		y := m.forward(x, bsz, h*w)
		v := 0.0
		for i := range y {
			v += y[i] * r[i]
		}
		return v
	}
	ctx := newCtx(nodes.StageTrain)
	defer ctx.Scope.Close()
	cs := ctx.Scope
	out, err := n.Forward(ctx, map[string]any{"data": cs.FromFloat64(x, bsz, h, w, 6)})
	if err != nil {
		t.Fatal(err)
	}
	y := values(t, out["rgb"].(*torch.Tensor))
	want := ref.forward(x, bsz, h*w)
	for i := range want {
		if math.Abs(y[i]-want[i]) > 1e-12 {
			t.Fatalf("rgb[%d] = %.15g, want %.15g", i, y[i], want[i])
		}
	}
	if sh := out["weights"].(*torch.Tensor).Shape(); sh[0] != 3 || sh[1] != 4 {
		t.Fatalf("weights shape %v, want [3 4]", sh)
	}
	l := cs.Sum(cs.Mul(out["rgb"].(*torch.Tensor), cs.FromFloat64(r, bsz, h, w, 3)), false)
	cs.Backward(l, nil, false)
	params := n.(nodes.Trainable).Parameters()
	for pi, p := range params {
		g := cs.Grad(p.Tensor)
		if g == nil {
			t.Fatalf("%s has no gradient", p.Name)
		}
		gv := values(t, g)
		layer := pi / 2
		vec := ref.w[layer]
		if pi%2 == 1 {
			vec = ref.b[layer]
		}
		for i := range vec {
			const step = 1e-6
			old := vec[i]
			vec[i] = old + step
			up := loss(ref)
			vec[i] = old - step
			dn := loss(ref)
			vec[i] = old
			fd := (up - dn) / (2 * step)
			if math.Abs(gv[i]-fd) > 1e-6*math.Max(1, math.Abs(fd)) {
				t.Fatalf("d loss/d %s[%d] = %.10g, finite difference %.10g", p.Name, i, gv[i], fd)
			}
		}
	}
	if err := cs.Err(); err != nil {
		t.Fatal(err)
	}
}

func fmtName(l int, kind string) string {
	return fmt.Sprintf("convs.%d.%s", l, kind)
}

func TestMixerPCAInit(t *testing.T) {
	const bsz, h, w, c = 3, 6, 6, 5
	rng := rand.New(rand.NewPCG(8, 9))
	data := spectra(rng, bsz*h*w, c)
	_, _, vecs, _ := goPCA(t, data, c)
	for _, scheme := range [][]int{{5, 3, 2}, {5, 7, 2}} {
		n := mustNode(t, "LearnableChannelMixer", map[string]any{
			"input_channels": c, "output_channels": 2, "reduction_scheme": scheme, "init_method": "pca"})
		f := n.(nodes.Fitter)
		if !f.RequiresFit() || f.Fitted() {
			t.Fatal("pca mixer should require a fit")
		}
		ctx := newCtx(nodes.StageTrain)
		x := tensorOf(t, ctx.Scope, data, bsz, h, w, c)
		if _, err := n.Forward(ctx, map[string]any{"data": x}); err == nil {
			t.Fatal("unfitted pca mixer ran")
		}
		fitPCA(t, n, data, 3, h, w, c)
		ps := n.(nodes.Trainable).Parameters()
		w0, b0 := values(t, ps[0].Tensor), values(t, ps[1].Tensor)
		for r := 0; r < scheme[1]; r++ {
			for j := 0; j < c; j++ {
				want := 0.0
				if r < c {
					want = vecs[r][j]
				}
				if math.Abs(w0[r*c+j]-want) > 1e-4 {
					t.Fatalf("scheme %v: w0[%d,%d] = %g, want %g", scheme, r, j, w0[r*c+j], want)
				}
			}
		}
		for _, v := range b0 {
			if v != 0 {
				t.Fatalf("bias after pca init = %v, want zeros", b0)
			}
		}
		if _, err := n.Forward(ctx, map[string]any{"data": x}); err != nil {
			t.Fatal(err)
		}
		ctx.Scope.Close()
	}
	if _, err := nodes.Builtins.New("LearnableChannelMixer", "m", map[string]any{
		"input_channels": 5, "output_channels": 2, "reduction_scheme": []any{4, 2}}); err == nil {
		t.Fatal("scheme not starting with input_channels accepted")
	}
}

// The float32 mixer's two forms — fused in one pass (inference, gradients off) and layer by
// layer through oneDNN (training) — agree with the float64 reference, also with the
// normaliser's affine folded in (ForwardAffine); the float32 gradients of the oneDNN path
// agree with float64 autograd of the same node.
func TestMixerFusedInferenceAndOneDNNGradients(t *testing.T) {
	const bsz, h, w, C = 2, 6, 7, 61
	scheme := []int{61, 16, 8, 3}
	const scale, shift = 1.7, -0.4
	rng := rand.New(rand.NewPCG(18, 1))
	params := func(dt string) map[string]any {
		return map[string]any{"input_channels": C, "output_channels": 3, "reduction_scheme": []any{61, 16, 8, 3},
			"leaky_relu_negative_slope": 0.1, "dtype": dt, "seed": 3}
	}
	n32 := mustNode(t, "LearnableChannelMixer", params("float32"))
	n64 := mustNode(t, "LearnableChannelMixer", params("float64"))
	ref := &goMixer{scheme: scheme, slope: 0.1, eps: 1e-6}
	s := torch.NewScope()
	defer s.Close()
	st32, st64 := map[string]*torch.Tensor{}, map[string]*torch.Tensor{}
	for l := 0; l+1 < len(scheme); l++ {
		in, out := scheme[l], scheme[l+1]
		wv, bv := make([]float64, in*out), make([]float64, out)
		for i := range wv {
			wv[i] = float64(float32(rng.NormFloat64() / math.Sqrt(float64(in))))
		}
		for i := range bv {
			bv[i] = float64(float32(0.1 * rng.NormFloat64()))
		}
		ref.w, ref.b = append(ref.w, wv), append(ref.b, bv)
		st64[fmtName(l, "weight")] = s.FromFloat64(wv, int64(out), int64(in), 1, 1)
		st64[fmtName(l, "bias")] = s.FromFloat64(bv, int64(out))
		st32[fmtName(l, "weight")] = s.ToDType(st64[fmtName(l, "weight")], torch.Float32)
		st32[fmtName(l, "bias")] = s.ToDType(st64[fmtName(l, "bias")], torch.Float32)
	}
	if err := n32.(nodes.Stateful).LoadState(st32); err != nil {
		t.Fatal(err)
	}
	if err := n64.(nodes.Stateful).LoadState(st64); err != nil {
		t.Fatal(err)
	}
	x := make([]float64, bsz*h*w*C)
	xa := make([]float64, len(x)) // scale·x + shift, what ForwardAffine sees
	for i := range x {
		x[i] = float64(float32(rng.Float64()))
		xa[i] = scale*x[i] + shift
	}
	want := ref.forward(xa, bsz, h*w)
	sink := n32.(nodes.AffineSink)
	for _, train := range []bool{false, true} {
		stage := nodes.StageInference
		if train {
			stage = nodes.StageTrain
		}
		ctx := newCtx(stage)
		ctx.Scope.SetGradEnabled(train)
		out, err := sink.ForwardAffine(ctx, map[string]any{"data": ctx.Scope.ToDType(ctx.Scope.FromFloat64(x, bsz, h, w, C), torch.Float32)}, scale, shift)
		if err != nil {
			t.Fatal(err)
		}
		got := values(t, out["rgb"].(*torch.Tensor))
		for i := range want {
			if math.Abs(got[i]-want[i]) > 2e-5 {
				t.Fatalf("train=%v: rgb[%d] = %.8g, float64 %.8g", train, i, got[i], want[i])
			}
		}
		ctx.Scope.Close()
	}
	// gradients: float32 (oneDNN) against float64 autograd of the same weights
	r := make([]float64, bsz*h*w*3)
	for i := range r {
		r[i] = rng.NormFloat64()
	}
	grads := func(n nodes.Node, dt torch.DType) [][]float64 {
		ctx := newCtx(nodes.StageTrain)
		defer ctx.Scope.Close()
		cs := ctx.Scope
		for _, p := range n.(nodes.Trainable).Parameters() {
			_ = p.Tensor.ZeroGrad(true)
		}
		out, err := n.Forward(ctx, map[string]any{"data": cs.ToDType(cs.FromFloat64(x, bsz, h, w, C), dt)})
		if err != nil {
			t.Fatal(err)
		}
		rgb := cs.ToDType(out["rgb"].(*torch.Tensor), torch.Float64)
		cs.Backward(cs.Sum(cs.Mul(rgb, cs.FromFloat64(r, bsz, h, w, 3)), false), nil, false)
		var gs [][]float64
		for _, p := range n.(nodes.Trainable).Parameters() {
			gs = append(gs, values(t, cs.Grad(p.Tensor)))
		}
		return gs
	}
	g32, g64 := grads(n32, torch.Float32), grads(n64, torch.Float64)
	names := n32.(nodes.Trainable).Parameters()
	for k := range g64 {
		scaleG := 0.0
		for _, v := range g64[k] {
			scaleG = math.Max(scaleG, math.Abs(v))
		}
		for i := range g64[k] {
			if math.Abs(g32[k][i]-g64[k][i]) > 1e-3*math.Max(1, scaleG) {
				t.Fatalf("grad %s[%d]: float32 %.8g, float64 %.8g", names[k].Name, i, g32[k][i], g64[k][i])
			}
		}
	}
}
