package detect

import (
	"github.com/spectraclip/spectraclip/internal/testpy"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

func TestDetectorRegistered(t *testing.T) {
	cases := []struct {
		typ    string
		params map[string]any
	}{
		{AdaCLIPTypeName, map[string]any{"image_size": 32}},
		{"cuvis_ai_adaclip.node.adaclip_node.AdaCLIPDetector", map[string]any{"image_size": 32, "gaussian_sigma": 2.0}},
		{RXTypeName, nil},
	}
	for _, tc := range cases {
		n, err := nodes.NewRegistry().New(tc.typ, "", tc.params)
		if err != nil {
			t.Fatalf("%s: %v", tc.typ, err)
		}
		if c, ok := n.(nodes.Closer); ok {
			c.Close()
		}
	}
}

func TestDetectorParamErrors(t *testing.T) {
	cases := []struct {
		params map[string]any
		want   string
	}{
		{map[string]any{"blur_padding": "nearest"}, "blur_padding"},
		{map[string]any{"gaussian_sigma": -1.0}, "gaussian_sigma"},
		{map[string]any{"image_size": -3}, "image_size"},
		{map[string]any{"use_half": true}, "use_half"},
		{map[string]any{"enable_gradients": "yes"}, "enable_gradients"},
	}
	for _, tc := range cases {
		_, err := NewAdaCLIP("det", tc.params)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"det"`) {
			t.Errorf("params %v: error %v, want one naming the node and %q", tc.params, err, tc.want)
		}
	}
}

func TestDetectorMetadata(t *testing.T) {
	d := newDetector(t, map[string]any{"image_size": 48})
	md := d.Metadata()
	if md.DetectorName != BuiltinName || md.Backbone != "none" || md.WeightName != "none" || md.ImageSize != 48 || md.ContractVersion != 1 || md.Path != "" {
		t.Errorf("metadata %+v", md)
	}
	if d.ImageSize() != 48 {
		t.Errorf("image size %d, want 48", d.ImageSize())
	}
}

func TestDetectorDeterministicAndBatchIndependent(t *testing.T) {
	cases := []struct {
		name   string
		params map[string]any
		h, w   int
	}{
		{"resize, zero blur", map[string]any{"image_size": 64}, 50, 70},
		{"no resize, reflect blur", map[string]any{"image_size": 40, "blur_padding": "reflect", "gaussian_sigma": 2.0}, 40, 40},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDetector(t, tc.params)
			n := tc.h * tc.w
			data := randomImages(5, 3, tc.h, tc.w)
			all, allImg := runDetector(t, d, data, 3, tc.h, tc.w)
			again, _ := runDetector(t, d, data, 3, tc.h, tc.w)
			if diff := maxAbsDiff(all, again); diff != 0 {
				t.Errorf("two runs differ by %g", diff)
			}
			for i := 0; i < 3; i++ {
				one, oneImg := runDetector(t, d, data[i*n*3:(i+1)*n*3], 1, tc.h, tc.w)
				// 2e-5 on scores in [0, 1]: float32 products round differently when the BLAS
				// picks its GEMM kernel by the row count, as MKL (PyPI's torch) does: a batch
				// of 3 and one image then differ by a few ulps before normalisation (1.06e-5
				// measured on 2.11 with MKL; under 1e-5 on OpenBLAS). A leak between images
				// moves scores by orders of magnitude more.
				if diff := maxAbsDiff(one, all[i*n:(i+1)*n]); diff > 2e-5 {
					t.Errorf("image %d: alone vs in a batch of 3 differ by %g", i, diff)
				}
				if diff := math.Abs(float64(oneImg[0] - allImg[i])); diff > 1e-5 {
					t.Errorf("image %d: image score alone vs in batch differ by %g", i, diff)
				}
			}
			lo, hi := float32(1), float32(0)
			for _, v := range all {
				lo, hi = min(lo, v), max(hi, v)
			}
			if lo < 0 || hi > 1 || hi-lo < 0.05 {
				t.Errorf("scores span [%g,%g], want a non-trivial range inside [0,1]", lo, hi)
			}
		})
	}
}

func TestDetectorPerImageRange(t *testing.T) {
	const h, w = 32, 32
	n := h * w * 3
	d := newDetector(t, map[string]any{"image_size": 32})
	data := randomImages(9, 2, h, w)
	mixed := append([]float32(nil), data...)
	for i := n; i < 2*n; i++ { // second image in [0,255]
		mixed[i] *= 255
	}
	got, gotImg := runDetector(t, d, mixed, 2, h, w)
	for i := 0; i < 2; i++ {
		one, oneImg := runDetector(t, d, data[i*n:(i+1)*n], 1, h, w)
		if diff := maxAbsDiff(one, got[i*h*w:(i+1)*h*w]); diff > 1e-5 {
			t.Errorf("image %d: scores in a mixed-range batch differ from the [0,1] image alone by %g", i, diff)
		}
		if diff := math.Abs(float64(oneImg[0] - gotImg[i])); diff > 1e-5 {
			t.Errorf("image %d: image score differs by %g", i, diff)
		}
	}
}

func TestDetectorGradients(t *testing.T) {
	const h, w = 24, 24
	for _, on := range []bool{true, false} {
		d := newDetector(t, map[string]any{"image_size": 32, "enable_gradients": on})
		s := torch.NewScope()
		x := s.FromFloat32(randomImages(4, 2, h, w), 2, h, w, 3)
		if err := x.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
		out, err := d.Forward(&nodes.Context{Scope: s}, map[string]any{"rgb_image": x})
		if err != nil {
			t.Fatal(err)
		}
		sc := out["scores"].(*torch.Tensor)
		if sc.RequiresGrad() != on {
			t.Errorf("enable_gradients=%v: scores.requires_grad = %v", on, sc.RequiresGrad())
		}
		if on {
			s.Backward(s.Add(s.Sum(sc, false), s.Sum(out["anomaly_score"].(*torch.Tensor), false)), nil, false)
			g := s.Grad(x)
			if g == nil {
				t.Fatal("no gradient reached the input")
			}
			norm, _ := s.Norm(g, 2, false).Item()
			if !(norm > 0) || math.IsNaN(norm) {
				t.Errorf("input gradient norm %g, want finite and > 0", norm)
			}
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

// writeModule saves a hand-made TorchScript module with the given attributes and forward.
func writeModule(t *testing.T, path string, attrs map[string]any, param bool, src string) {
	t.Helper()
	m, err := torch.NewModule("TestDetector")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	for k, v := range attrs {
		switch x := v.(type) {
		case int:
			err = m.SetAttrInt(k, int64(x))
		case string:
			err = m.SetAttrString(k, x)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if param {
		s := torch.NewScope()
		p := s.FromFloat32([]float32{1.5}, 1)
		if err := m.RegisterParameter("gain", p); err != nil {
			t.Fatal(err)
		}
		s.Close()
		if err := m.SetRequiresGrad(true); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Define(src); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(path); err != nil {
		t.Fatal(err)
	}
}

func contractAttrs(size int) map[string]any {
	return map[string]any{"image_size": size, "contract_version": 1, "backbone": "tiny", "prompt": "",
		"weight_name": "test", "detector_name": "test-detector"}
}

const gainSource = `
def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    p = torch.sigmoid(x.mean(1) * self.gain)
    return p, p.mean([1, 2])
`

func TestDetectorBadFiles(t *testing.T) {
	dir := t.TempDir()
	noAttrs := filepath.Join(dir, "noattrs.pt")
	writeModule(t, noAttrs, nil, false, `
def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    p = torch.sigmoid(x.mean(1))
    return p, p.mean([1, 2])
`)
	oneOut := filepath.Join(dir, "oneout.pt")
	writeModule(t, oneOut, contractAttrs(16), false, `
def forward(self, x: Tensor) -> Tensor:
    return torch.sigmoid(x.mean(1))
`)
	badShape := filepath.Join(dir, "badshape.pt")
	writeModule(t, badShape, contractAttrs(16), false, `
def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    p = torch.sigmoid(x)
    return p, p.mean([1, 2, 3])
`)
	badRange := filepath.Join(dir, "badrange.pt")
	writeModule(t, badRange, contractAttrs(16), false, `
def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    p = x.mean(1) * 10.0
    return p, p.mean([1, 2])
`)
	v2 := contractAttrs(16)
	v2["contract_version"] = 2
	wrongVersion := filepath.Join(dir, "v2.pt")
	writeModule(t, wrongVersion, v2, false, `
def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    p = torch.sigmoid(x.mean(1))
    return p, p.mean([1, 2])
`)
	garbage := filepath.Join(dir, "garbage.pt")
	if err := os.WriteFile(garbage, []byte("not a zip"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		path, want string
	}{
		{filepath.Join(dir, "missing.pt"), "no such file"},
		{garbage, garbage},
		{noAttrs, "contract_version"},
		{oneOut, "want 2"},
		{badShape, "shape"},
		{badRange, "[0,1]"},
		{wrongVersion, "contract_version 2"},
	}
	for _, tc := range cases {
		_, err := NewAdaCLIP("det", map[string]any{"detector_path": tc.path})
		if err == nil {
			t.Errorf("%s: loaded, want an error", filepath.Base(tc.path))
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.path) || !strings.Contains(msg, tc.want) || !strings.Contains(msg, `"det"`) {
			t.Errorf("%s: error %q should name the node, the file and contain %q", filepath.Base(tc.path), msg, tc.want)
		}
	}
}

func TestDetectorFileModuleFrozen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gain.pt")
	writeModule(t, path, contractAttrs(16), true, gainSource)
	n, err := NewFromFiles("gain", map[string]string{"detector": path}, map[string]any{"enable_gradients": true, "gaussian_sigma": 0.0})
	if err != nil {
		t.Fatal(err)
	}
	d := n.(*AdaCLIP)
	defer d.Close()
	if md := d.Metadata(); md.DetectorName != "test-detector" || md.Path != path || md.ImageSize != 16 {
		t.Errorf("metadata %+v", md)
	}
	params, err := d.Module().Parameters()
	if err != nil || len(params) != 1 {
		t.Fatalf("parameters %v, %v", params, err)
	}
	for name, p := range params {
		if p.RequiresGrad() {
			t.Errorf("module parameter %s requires grad after loading", name)
		}
	}
	s := torch.NewScope()
	defer s.Close()
	x := s.FromFloat32(randomImages(2, 1, 16, 16), 1, 16, 16, 3)
	x.SetRequiresGrad(true)
	out, err := d.Forward(&nodes.Context{Scope: s}, map[string]any{"rgb_image": x})
	if err != nil {
		t.Fatal(err)
	}
	s.Backward(s.Sum(out["scores"].(*torch.Tensor), false), nil, false)
	if s.Grad(x) == nil {
		t.Error("no gradient at the input")
	}
	for name, p := range params {
		if g := s.Grad(p); g != nil {
			t.Errorf("frozen parameter %s received a gradient", name)
		}
		p.Free()
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	// With σ=0 and no resize the node's map is the module's output: sigmoid(1.5·mean_c(x_clip)).
	got, _ := out["scores"].(*torch.Tensor).Float32s()
	img := randomImages(2, 1, 16, 16)
	for p := 0; p < 16*16; p++ {
		m := 0.0
		for c := 0; c < 3; c++ {
			m += (float64(img[p*3+c]) - float64(clipMean[c])) / float64(clipStd[c])
		}
		want := 1 / (1 + math.Exp(-1.5*m/3))
		if math.Abs(float64(got[p])-want) > 1e-5 {
			t.Fatalf("pixel %d: %g, want %g (CLIP normalisation or layout wrong)", p, got[p], want)
		}
	}
	if _, err := NewFromFiles("x", map[string]string{}, nil); err == nil {
		t.Error("NewFromFiles without a detector file succeeded")
	}
	if !slices.Contains(nodes.PluginKinds(), PluginKind) {
		t.Errorf("plugin kind %s not registered (have %v)", PluginKind, nodes.PluginKinds())
	}
	one, err := NewFromFiles("only", map[string]string{"detector.pt": path}, nil)
	if err != nil {
		t.Fatalf("single unnamed file: %v", err)
	}
	one.(*AdaCLIP).Close()
}

func TestBlurPaddingModes(t *testing.T) {
	const size = 64
	path := filepath.Join(t.TempDir(), "const.pt")
	// A detector that answers 1 everywhere: blurring must keep 1 inside and, with zero
	// padding only, attenuate the border.
	writeModule(t, path, contractAttrs(size), false, `
def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
    p = torch.ones_like(x[:, 0])
    return p, p.mean([1, 2])
`)
	if BlurRadius(4, "zero") != 13 || BlurRadius(4, "reflect") != 16 {
		t.Fatalf("radii %d/%d, want 13 (27 taps) and 16 (33 taps)", BlurRadius(4, "zero"), BlurRadius(4, "reflect"))
	}
	for _, pad := range []string{"zero", "reflect"} {
		d := newDetector(t, map[string]any{"detector_path": path, "blur_padding": pad})
		sc, _ := runDetector(t, d, randomImages(1, 1, size, size), 1, size, size)
		corner, centre := float64(sc[0]), float64(sc[size/2*size+size/2])
		if math.Abs(centre-1) > 1e-5 {
			t.Errorf("%s: centre %g, want 1", pad, centre)
		}
		// Zero padding: a corner sees a quarter of the kernel mass plus half the centre row
		// and column: (Σ_{k>=0} g_k)² / (Σ_k g_k)² with g the σ=4 Gaussian of radius 13.
		var half, full float64
		for k := -13; k <= 13; k++ {
			g := math.Exp(-float64(k*k) / 32)
			full += g
			if k >= 0 {
				half += g
			}
		}
		want := 1.0
		if pad == "zero" {
			want = (half / full) * (half / full)
		}
		if math.Abs(corner-want) > 1e-4 {
			t.Errorf("%s: corner %g, want %g", pad, corner, want)
		}
	}
}

func TestExportedTinyDetector(t *testing.T) {
	script := filepath.Join("..", "..", "scripts", "export_adaclip.py")
	if _, err := os.Stat(script); err != nil {
		t.Skip("scripts/export_adaclip.py is not there")
	}
	if _, err := os.Stat(testpy.Python()); err != nil {
		t.Skip("/usr/bin/python3 (with torch) is not there")
	}
	if testing.Short() {
		t.Skip("exporting runs Python; skipped with -short")
	}
	out := filepath.Join(t.TempDir(), "tiny.pt")
	cmd := exec.Command(testpy.Python(), script, "--tiny", "--out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("export_adaclip.py --tiny failed: %v\n%s", err, b)
	}
	d := newDetector(t, map[string]any{"detector_path": out, "weight_name": "pretrained_all"})
	md := d.Metadata()
	if md.DetectorName == BuiltinName || md.ContractVersion != 1 {
		t.Errorf("metadata %+v", md)
	}
	sc, img := runDetector(t, d, randomImages(3, 2, 40, 30), 2, 40, 30)
	for _, v := range append(sc, img...) {
		if !(v >= 0 && v <= 1) {
			t.Fatalf("score %g outside [0,1]", v)
		}
	}
	t.Logf("tiny exported detector %+v ok", md)
}

func TestDetectorNoLeak(t *testing.T) {
	d := newDetector(t, map[string]any{"image_size": 32, "enable_gradients": true})
	data := randomImages(8, 2, 20, 20)
	runDetector(t, d, data, 2, 20, 20) // first call may cache
	base := torch.LiveTensors()
	for range 3 {
		runDetector(t, d, data, 2, 20, 20)
	}
	if got := torch.LiveTensors(); got != base {
		t.Errorf("live tensors %d after 3 steps, want %d", got, base)
	}
}

// scipyGaussianReflect is an independent float64 reference of
// scipy.ndimage.gaussian_filter(m, sigma, mode="reflect", truncate=4.0) on one [h,w] map:
// the separable kernel exp(-x²/2σ²) of radius int(4σ+0.5), normalised, with half-sample
// symmetric borders (d c b a | a b c d | d c b a).
func scipyGaussianReflect(m []float64, h, w int, sigma float64) []float64 {
	r := int(4*sigma + 0.5)
	k := make([]float64, 2*r+1)
	sum := 0.0
	for i := -r; i <= r; i++ {
		k[i+r] = math.Exp(-0.5 * float64(i*i) / (sigma * sigma))
		sum += k[i+r]
	}
	for i := range k {
		k[i] /= sum
	}
	reflect := func(i, n int) int {
		for i < 0 || i >= n {
			if i < 0 {
				i = -i - 1
			}
			if i >= n {
				i = 2*n - i - 1
			}
		}
		return i
	}
	tmp := make([]float64, h*w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			acc := 0.0
			for j := -r; j <= r; j++ {
				acc += k[j+r] * m[y*w+reflect(x+j, w)]
			}
			tmp[y*w+x] = acc
		}
	}
	out := make([]float64, h*w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			acc := 0.0
			for j := -r; j <= r; j++ {
				acc += k[j+r] * tmp[reflect(y+j, h)*w+x]
			}
			out[y*w+x] = acc
		}
	}
	return out
}

// TestDefaultPostprocessIsUpstreams checks that the detector node's defaults (no
// gaussian_sigma or blur_padding set) smooth like upstream AdaCLIP, scipy's
// gaussian_filter with σ = 4 and reflect borders, to float32 rounding (1e-5 absolute on maps
// in [0,1]).
func TestDefaultPostprocessIsUpstreams(t *testing.T) {
	const b, size = 2, 48
	d := newDetector(t, map[string]any{"image_size": size})
	rng := rand.New(rand.NewPCG(rand.Uint64(), 11))
	data := make([]float32, b*size*size)
	for i := range data {
		data[i] = rng.Float32()
	}
	s := torch.NewScope()
	defer s.Close()
	out, err := d.Postprocess(s, s.FromFloat32(data, b, size, size), size, size)
	if err != nil {
		t.Fatal(err)
	}
	got, err := out.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < b; i++ {
		m := make([]float64, size*size)
		for j := range m {
			m[j] = float64(data[i*size*size+j])
		}
		want := scipyGaussianReflect(m, size, size, 4)
		for j := range want {
			if diff := math.Abs(float64(got[i*size*size+j]) - want[j]); diff > 1e-5 {
				t.Fatalf("image %d pixel (%d,%d): %g, scipy reflect σ=4 gives %g (diff %g)", i, j/size, j%size, got[i*size*size+j], want[j], diff)
			}
		}
	}
}
