package reduce

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func fitPCA(t *testing.T, n nodes.Node, data []float32, batches, h, w, c int) {
	t.Helper()
	f := n.(nodes.Fitter)
	if err := f.FitReset(); err != nil {
		t.Fatal(err)
	}
	per := len(data) / batches
	for b := 0; b < batches; b++ {
		ctx := newCtx(nodes.StageTrain)
		x := tensorOf(t, ctx.Scope, data[b*per:(b+1)*per], int64(per/(h*w*c)), int64(h), int64(w), int64(c))
		if err := f.FitBatch(ctx, map[string]any{"data": x}); err != nil {
			t.Fatal(err)
		}
		ctx.Scope.Close()
	}
	if err := f.FitFinish(); err != nil {
		t.Fatal(err)
	}
}

func TestPCAAgainstGonum(t *testing.T) {
	const b, h, w, c, k = 6, 8, 10, 9, 4
	rng := rand.New(rand.NewPCG(1, 2))
	data := spectra(rng, b*h*w, c)
	mean, vals, vecs, trace := goPCA(t, data, c)
	for _, batches := range []int{1, 3, 6} {
		n := mustNode(t, "TrainablePCA", map[string]any{"n_components": k, "num_channels": c})
		fitPCA(t, n, data, batches, h, w, c)
		p := n.(*TrainablePCA)
		gotMean := values(t, p.mean)
		for j := range mean {
			if math.Abs(gotMean[j]-mean[j]) > 1e-5*math.Max(1, math.Abs(mean[j])) {
				t.Fatalf("batches %d: mean[%d] = %g, want %g", batches, j, gotMean[j], mean[j])
			}
		}
		comps := values(t, p.components)
		vars := values(t, p.variance)
		for r := 0; r < k; r++ {
			if math.Abs(vars[r]-vals[r]) > 1e-5*vals[r] {
				t.Fatalf("batches %d: variance[%d] = %g, want %g", batches, r, vars[r], vals[r])
			}
			best := 0
			for j := 0; j < c; j++ {
				if d := math.Abs(comps[r*c+j] - vecs[r][j]); d > 1e-4 {
					t.Fatalf("batches %d: component %d entry %d = %g, want %g", batches, r, j, comps[r*c+j], vecs[r][j])
				}
				if math.Abs(comps[r*c+j]) > math.Abs(comps[r*c+best]) {
					best = j
				}
			}
			if comps[r*c+best] <= 0 { // sign convention
				t.Fatalf("component %d: largest-magnitude entry %g is not positive", r, comps[r*c+best])
			}
		}
		ratio, total := p.ExplainedVarianceRatio()
		sum, sumV := 0.0, 0.0
		for r := 0; r < k; r++ {
			sum += float64(ratio[r])
			sumV += vals[r]
		}
		for r := 0; r < k; r++ {
			if math.Abs(float64(ratio[r])-vals[r]/sumV) > 1e-5 || math.Abs(float64(total[r])-vals[r]/trace) > 1e-5 {
				t.Fatalf("ratio[%d] = %g/%g, want %g/%g", r, ratio[r], total[r], vals[r]/sumV, vals[r]/trace)
			}
		}
		if math.Abs(sum-1) > 1e-5 {
			t.Fatalf("retained ratios sum to %g, want 1", sum)
		}

		// Forward against (x − mean)·Vᵀ in float64.
		ctx := newCtx(nodes.StageVal)
		x := tensorOf(t, ctx.Scope, data[:h*w*c], 1, h, w, c)
		out, err := n.Forward(ctx, map[string]any{"data": x})
		if err != nil {
			t.Fatal(err)
		}
		y := values(t, out["projected"].(*torch.Tensor))
		for px := 0; px < h*w; px++ {
			for r := 0; r < k; r++ {
				want := 0.0
				for j := 0; j < c; j++ {
					want += (float64(data[px*c+j]) - mean[j]) * vecs[r][j]
				}
				if math.Abs(y[px*k+r]-want) > 1e-3*math.Max(1, math.Abs(want)) {
					t.Fatalf("projected[%d,%d] = %g, want %g", px, r, y[px*k+r], want)
				}
			}
		}
		rt := values(t, out["explained_variance_ratio_total"].(*torch.Tensor))
		if math.Abs(rt[0]-vals[0]/trace) > 1e-5 {
			t.Fatalf("explained_variance_ratio_total[0] = %g, want %g", rt[0], vals[0]/trace)
		}
		ctx.Scope.Close()
	}
}

func TestPCAWhitenAndErrors(t *testing.T) {
	const b, h, w, c = 4, 8, 8, 6
	rng := rand.New(rand.NewPCG(3, 4))
	data := spectra(rng, b*h*w, c)
	n := mustNode(t, "TrainablePCA", map[string]any{"n_components": 3, "whiten": true})
	ctx := newCtx(nodes.StageVal)
	defer ctx.Scope.Close()
	x := tensorOf(t, ctx.Scope, data, b, h, w, c)
	if _, err := n.Forward(ctx, map[string]any{"data": x}); err == nil || !strings.Contains(err.Error(), "not fitted") {
		t.Fatalf("unfitted forward: err = %v, want a not-fitted error", err)
	}
	fitPCA(t, n, data, 2, h, w, c)
	out, err := n.Forward(ctx, map[string]any{"data": x})
	if err != nil {
		t.Fatal(err)
	}
	y := values(t, out["projected"].(*torch.Tensor))
	np := b * h * w
	for r := 0; r < 3; r++ { // whitened training projections have unit sample variance
		m, v := 0.0, 0.0
		for i := 0; i < np; i++ {
			m += y[i*3+r]
		}
		m /= float64(np)
		for i := 0; i < np; i++ {
			v += (y[i*3+r] - m) * (y[i*3+r] - m)
		}
		v /= float64(np - 1)
		if math.Abs(v-1) > 1e-3 || math.Abs(m) > 1e-3 {
			t.Fatalf("whitened component %d: mean %g variance %g, want 0 and 1", r, m, v)
		}
	}
	if _, err := nodes.Builtins.New("TrainablePCA", "p", map[string]any{"n_components": 0}); err == nil {
		t.Fatal("n_components 0 accepted")
	}
	if _, err := nodes.Builtins.New("cuvis_ai.node.pca.TrainablePCA", "p", map[string]any{"bogus": 1}); err == nil {
		t.Fatal("unknown parameter accepted")
	}
	// State round trip.
	st := map[string]*torch.Tensor{}
	for _, nt := range n.(nodes.Stateful).State() {
		st[nt.Name] = nt.Tensor
	}
	m2 := mustNode(t, "TrainablePCA", map[string]any{"n_components": 3, "whiten": true})
	if err := m2.(nodes.Stateful).LoadState(st); err != nil {
		t.Fatal(err)
	}
	out2, err := m2.Forward(ctx, map[string]any{"data": x})
	if err != nil {
		t.Fatal(err)
	}
	y2 := values(t, out2["projected"].(*torch.Tensor))
	for i := range y {
		if math.Abs(y[i]-y2[i]) > 1e-4 {
			t.Fatalf("restored PCA differs at %d: %g vs %g", i, y2[i], y[i])
		}
	}
}
