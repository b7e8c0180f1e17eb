package reduce

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func TestConcreteTemperature(t *testing.T) {
	for _, tc := range []struct {
		sched string
		max   int
		want  func(f float64) float64
	}{
		{"exponential", 20, func(f float64) float64 { return math.Pow(10, 1-2*f) }},
		{"linear", 20, func(f float64) float64 { return 10 + f*(0.1-10) }},
		{"exponential", 50, func(f float64) float64 { return math.Pow(10, 1-2*f) }},
	} {
		n := mustNode(t, "ConcreteBandSelector", map[string]any{"input_channels": 8, "schedule": tc.sched, "max_epochs": tc.max}).(*ConcreteBandSelector)
		for _, e := range []int{-3, 0, 1, 7, tc.max - 1, tc.max + 5} {
			f := float64(min(max(e, 0), tc.max-1)) / float64(tc.max-1)
			if got, want := n.Temperature(e), tc.want(f); math.Abs(got-want) > 1e-12*want {
				t.Fatalf("%s/%d: τ(%d) = %g, want %g", tc.sched, tc.max, e, got, want)
			}
		}
	}
	one := mustNode(t, "ConcreteBandSelector", map[string]any{"input_channels": 8, "max_epochs": 1}).(*ConcreteBandSelector)
	if one.Temperature(0) != 0.1 {
		t.Fatalf("max_epochs 1: τ = %g, want tau_end", one.Temperature(0))
	}
}

func TestConcreteForward(t *testing.T) {
	const bsz, h, w, c, k = 2, 3, 4, 7, 3
	rng := rand.New(rand.NewPCG(10, 11))
	n := mustNode(t, "cuvis_ai.node.concrete_selector.ConcreteBandSelector", map[string]any{
		"input_channels": c, "output_channels": k, "seed": 3}).(*ConcreteBandSelector)
	x := make([]float32, bsz*h*w*c)
	for i := range x {
		x[i] = rng.Float32()
	}
	check := func(n *ConcreteBandSelector, ctx *nodes.Context) ([]float64, []float64) {
		t.Helper()
		out, err := n.Forward(ctx, map[string]any{"data": tensorOf(t, ctx.Scope, x, bsz, h, w, c)})
		if err != nil {
			t.Fatal(err)
		}
		wt := values(t, out["selection_weights"].(*torch.Tensor))
		rgb := values(t, out["rgb"].(*torch.Tensor))
		for r := 0; r < k; r++ {
			sum := 0.0
			for j := 0; j < c; j++ {
				sum += wt[r*c+j]
			}
			if math.Abs(sum-1) > 1e-5 {
				t.Fatalf("weights row %d sums to %g", r, sum)
			}
		}
		for p := 0; p < bsz*h*w; p++ {
			for r := 0; r < k; r++ {
				want := 0.0
				for j := 0; j < c; j++ {
					want += wt[r*c+j] * float64(x[p*c+j])
				}
				if math.Abs(rgb[p*k+r]-want) > 1e-5 {
					t.Fatalf("rgb[%d,%d] = %g, want %g", p, r, rgb[p*k+r], want)
				}
			}
		}
		return wt, rgb
	}
	ctx := newCtx(nodes.StageTrain)
	defer ctx.Scope.Close()
	w1, _ := check(n, ctx)
	w2, _ := check(n, ctx)
	same := true
	for i := range w1 {
		if w1[i] != w2[i] {
			same = false
		}
		if w1[i] <= 0 || w1[i] >= 1 {
			t.Fatalf("training weight %g not strictly inside (0,1)", w1[i])
		}
	}
	if same {
		t.Fatal("two training forwards drew the same Gumbel noise")
	}

	// Hard inference: one-hot of the argmax.
	logits := make([]float32, k*c)
	for i := range logits {
		logits[i] = rng.Float32()
	}
	logits[0*c+5], logits[1*c+2], logits[2*c+6] = 5, 5, 5
	if err := n.LoadState(map[string]*torch.Tensor{"logits": ctx.Scope.FromFloat32(logits, k, c)}); err != nil {
		t.Fatal(err)
	}
	vctx := newCtx(nodes.StageVal)
	defer vctx.Scope.Close()
	wt, _ := check(n, vctx)
	want := []int{5, 2, 6}
	for r := 0; r < k; r++ {
		for j := 0; j < c; j++ {
			if e := map[bool]float64{true: 1, false: 0}[j == want[r]]; wt[r*c+j] != e {
				t.Fatalf("hard weights row %d = %v, want one-hot at %d", r, wt[r*c:(r+1)*c], want[r])
			}
		}
	}
	wl := []float32{400, 450, 500, 550, 600, 650, 700}
	b, nm, err := n.SelectedBands(wl)
	if err != nil || b[0] != 5 || b[1] != 2 || b[2] != 6 || nm[0] != 650 || nm[1] != 500 || nm[2] != 700 {
		t.Fatalf("SelectedBands = %v %v %v", b, nm, err)
	}
	if n.Collapsed() {
		t.Fatal("distinct bands reported as collapsed")
	}
	if _, _, err := n.SelectedBands(wl[:3]); err == nil {
		t.Fatal("wrong wavelength count accepted")
	}
	// Deterministic selection weights: softmax(logits/τ_mid), τ_mid = 1.
	sw := values(t, n.SelectionWeights(vctx.Scope, true))
	for r := 0; r < k; r++ {
		z := 0.0
		for j := 0; j < c; j++ {
			z += math.Exp(float64(logits[r*c+j]))
		}
		for j := 0; j < c; j++ {
			if e := math.Exp(float64(logits[r*c+j])) / z; math.Abs(sw[r*c+j]-e) > 1e-6 {
				t.Fatalf("SelectionWeights[%d,%d] = %g, want %g", r, j, sw[r*c+j], e)
			}
		}
	}
	// Soft inference: softmax(logits/τ_end).
	soft := mustNode(t, "ConcreteBandSelector", map[string]any{"input_channels": c, "output_channels": k, "use_hard_inference": false, "logits_init": "uniform_noise"}).(*ConcreteBandSelector)
	sw2, _ := check(soft, vctx)
	for _, v := range sw2 {
		if v <= 0 || v >= 1 {
			t.Fatalf("soft inference weight %g is not strictly inside (0,1)", v)
		}
	}
	// Zero logits: every channel prefers band 0 (a collapse), but the hard selection takes
	// distinct bands, ties to the lowest free index: 0, 1, 2; and the forward uses them.
	z := mustNode(t, "ConcreteBandSelector", map[string]any{"input_channels": c}).(*ConcreteBandSelector)
	if b, _, _ := z.SelectedBands(nil); b[0] != 0 || b[1] != 1 || b[2] != 2 || !z.Collapsed() {
		t.Fatalf("zero logits: bands %v collapsed %v, want [0 1 2] true", b, z.Collapsed())
	}
	zw, _ := check(z, vctx)
	for r := 0; r < k; r++ {
		for j := 0; j < c; j++ {
			if e := map[bool]float64{true: 1, false: 0}[j == r]; zw[r*c+j] != e {
				t.Fatalf("zero logits: hard weights row %d = %v, want one-hot at %d", r, zw[r*c:(r+1)*c], r)
			}
		}
	}
}

// TestMoreOutputsThanBandsRefused: distinct bands need output_channels <= input_channels.
func TestMoreOutputsThanBandsRefused(t *testing.T) {
	_, err := nodes.Builtins.New("ConcreteBandSelector", "sel", map[string]any{"input_channels": 2, "output_channels": 3})
	if err == nil || !strings.Contains(err.Error(), "output_channels") {
		t.Fatalf("3 outputs from 2 bands: %v", err)
	}
}

// TestHardSelectionDistinct: on fresh random logits with many ties and shared favourites, the
// hard selection is always Out distinct bands, and equals an independent brute force: the
// greedy order of the definition (channel by channel, best free band, ties to the lowest).
func TestHardSelectionDistinct(t *testing.T) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), 7))
	for trial := 0; trial < 2000; trial++ {
		in, out := 1+rng.IntN(8), 0
		out = 1 + rng.IntN(in)
		v := make([]float32, out*in)
		for i := range v {
			v[i] = float32(rng.IntN(3)) // many ties
		}
		got := distinctBands(v, out, in)
		seen := map[int]bool{}
		for k, b := range got {
			if b < 0 || b >= in || seen[b] {
				t.Fatalf("logits %v (%d×%d): selection %v is not distinct", v, out, in, got)
			}
			seen[b] = true
			// no free band (not taken by an earlier channel) beats b, and none ties it at a lower index
			for c := 0; c < in; c++ {
				free := true
				for _, e := range got[:k] {
					free = free && e != c
				}
				if free && (v[k*in+c] > v[k*in+b] || (v[k*in+c] == v[k*in+b] && c < b)) {
					t.Fatalf("logits %v: channel %d took %d, but free band %d is better or an earlier tie", v, k, b, c)
				}
			}
		}
	}
}
