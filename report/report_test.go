package report

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/plot/plotutil"
)

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// countColor counts pixels exactly equal to c (ignoring alpha), to check that a series was
// actually drawn in its colour.
func countColor(img image.Image, c color.Color) int {
	r0, g0, b0, _ := c.RGBA()
	n := 0
	bd := img.Bounds()
	for y := bd.Min.Y; y < bd.Max.Y; y++ {
		for x := bd.Min.X; x < bd.Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 == r0>>8 && g>>8 == g0>>8 && b>>8 == b0>>8 {
				n++
			}
		}
	}
	return n
}

func randomSeries(r *rand.Rand, n int) []XY {
	pts := make([]XY, n)
	v := 1.0
	for i := range pts {
		v *= 0.9 + 0.05*r.Float64()
		pts[i] = XY{float64(i), v}
	}
	return pts
}

func TestPlots(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	fpr := []float64{0, 0.05, 0.1, 0.3, 0.6, 1}
	tpr := []float64{0, 0.4, 0.7, 0.85, 0.95, 1}
	wl := make([]float64, 51)
	normal, anomaly := make([]float64, 51), make([]float64, 51)
	for i := range wl {
		wl[i] = 450 + 10*float64(i)
		normal[i] = 0.3 + 0.1*math.Sin(float64(i)/8) + 0.01*r.Float64()
		anomaly[i] = 0.5 + 0.1*math.Cos(float64(i)/6) + 0.01*r.Float64()
	}
	tests := []struct {
		name string
		file string
		draw func(path string) error
		w, h int
	}{
		{"loss", "curves/loss.png", func(p string) error {
			return LinePlot(p, "Loss", "epoch", "loss", map[string][]XY{"train": randomSeries(r, 30), "val": randomSeries(r, 30)})
		}, LineWidthPx, LineHeightPx},
		{"roc", "roc.png", func(p string) error {
			return ROCPlot(p, map[string]Curve{"val": {X: fpr, Y: tpr}})
		}, SquareWidthPx, SquareHeightPx},
		{"pr", "pr.png", func(p string) error {
			return PRPlot(p, map[string]Curve{"val": {X: tpr, Y: []float64{1, 0.9, 0.8, 0.6, 0.4, 0.2}, Area: 0.71}})
		}, SquareWidthPx, SquareHeightPx},
		{"bands", "bands.png", func(p string) error {
			return BandPlot(p, wl, map[string][]float64{"normal": normal, "anomaly": anomaly}, []float64{550, 700, 870})
		}, LineWidthPx, LineHeightPx},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			if err := tc.draw(path); err != nil {
				t.Fatal(err)
			}
			img := decodePNG(t, path)
			if img.Bounds().Dx() != tc.w || img.Bounds().Dy() != tc.h {
				t.Errorf("size %v, want %dx%d", img.Bounds().Size(), tc.w, tc.h)
			}
			// The first series (sorted order) is drawn in plotutil.Color(0).
			if n := countColor(img, plotutil.Color(0)); n < 50 {
				t.Errorf("only %d pixels in the first series colour; was the line drawn?", n)
			}
			ents, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range ents {
				if strings.Contains(e.Name(), ".tmp") {
					t.Errorf("temporary file %s left behind", e.Name())
				}
			}
		})
	}
}

func TestPlotDeterministic(t *testing.T) {
	dir := t.TempDir()
	series := map[string][]XY{}
	for i, name := range []string{"c", "a", "b", "d"} {
		series[name] = randomSeries(rand.New(rand.NewPCG(uint64(i), 3)), 20)
	}
	var outs [][]byte
	for i := range 2 {
		p := filepath.Join(dir, []string{"one.png", "two.png"}[i])
		if err := LinePlot(p, "IoU", "epoch", "IoU", series); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b)
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Error("two renders of the same data differ")
	}
}

func TestPlotErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.png")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no series", LinePlot(p, "", "", "", nil), "no series"},
		{"empty series", LinePlot(p, "", "", "", map[string][]XY{"a": nil}), `"a" is empty`},
		{"nan point", LinePlot(p, "", "", "", map[string][]XY{"a": {{0, 1}, {1, math.NaN()}}}), `"a"`},
		{"roc lengths", ROCPlot(p, map[string]Curve{"v": {X: []float64{0, 1}, Y: []float64{0}}}), "2 x and 1 y"},
		{"pr short", PRPlot(p, map[string]Curve{"v": {X: []float64{0}, Y: []float64{1}}}), "at least 2"},
		{"band lengths", BandPlot(p, []float64{400, 500, 600}, map[string][]float64{"n": {1, 2}}, nil), "2 values for 3 wavelengths"},
		{"band selected", BandPlot(p, []float64{400, 500}, map[string][]float64{"n": {1, 2}}, []float64{900}), "outside"},
	}
	for _, tc := range tests {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want mention of %q", tc.name, tc.err, tc.want)
		}
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Errorf("failed plots left %s behind", p)
	}
}

func TestROCLegendArea(t *testing.T) {
	x := []float64{0, 0.5, 1}
	y := []float64{0, 0.8, 1}
	// Trapezoid by hand: 0.5·0.4 + 0.5·0.9 = 0.65.
	if got := trapezoid(x, y); math.Abs(got-0.65) > 1e-15 {
		t.Errorf("trapezoid = %v, want 0.65", got)
	}
}

func TestHeatmap(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	const h, w = 6, 9
	s := make([]float32, h*w)
	for i := range s {
		s[i] = float32(3 + 2*r.NormFloat64())
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range s {
		lo, hi = math.Min(lo, float64(v)), math.Max(hi, float64(v))
	}
	rb, err := HeatmapColormap(s, h, w, RedBlue)
	if err != nil {
		t.Fatal(err)
	}
	inf, err := Heatmap(s, h, w)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Bounds().Dx() != w || rb.Bounds().Dy() != h {
		t.Fatalf("bounds %v", rb.Bounds())
	}
	sawMin, sawMax := false, false
	for i, v := range s {
		n := (float64(v) - lo) / (hi - lo)
		c := rb.RGBAAt(i%w, i/w)
		if math.Abs(float64(c.R)-255*n) > 0.51 || math.Abs(float64(c.B)-255*(1-n)) > 0.51 || c.G != 0 {
			t.Fatalf("pixel %d: %v for normalised %v", i, c, n)
		}
		switch float64(v) {
		case lo:
			sawMin = inf.RGBAAt(i%w, i/w) == color.RGBA{0, 0, 4, 255}
		case hi:
			sawMax = inf.RGBAAt(i%w, i/w) == color.RGBA{252, 255, 164, 255}
		}
	}
	if !sawMin || !sawMax {
		t.Errorf("inferno ends not at min/max pixels (min ok %v, max ok %v)", sawMin, sawMax)
	}
	// Inferno luminance rises monotonically along the map.
	prev := -1.0
	for k := 0; k <= 64; k++ {
		c := ColormapAt(Inferno, float64(k)/64)
		l := 0.2126*float64(c.R) + 0.7152*float64(c.G) + 0.0722*float64(c.B)
		if l < prev {
			t.Errorf("inferno luminance drops at %d/64", k)
		}
		prev = l
	}
	if _, err := Heatmap(s, h, w+1); err == nil || !strings.Contains(err.Error(), "needs 60 values, got 54") {
		t.Errorf("mismatched size: err = %v", err)
	}
	flat, err := Heatmap([]float32{2, 2, 2, 2}, 2, 2)
	if err != nil || flat.RGBAAt(1, 1) != ColormapAt(Inferno, 0) {
		t.Errorf("constant map: %v, %v", err, flat.RGBAAt(1, 1))
	}
}

func TestMaskAndConfusion(t *testing.T) {
	pred := []bool{true, true, false, false, true, false}
	truth := []bool{true, false, true, false, true, true}
	m, err := MaskImage(truth, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ConfusionImage(pred, truth, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []color.RGBA{ColorTP, ColorFP, ColorFN, ColorTN, ColorTP, ColorFN}
	for i := range pred {
		if got := c.RGBAAt(i%3, i/3); got != want[i] {
			t.Errorf("confusion pixel %d = %v, want %v", i, got, want[i])
		}
		red := uint8(0)
		if truth[i] {
			red = 255
		}
		if got := m.RGBAAt(i%3, i/3); got != (color.RGBA{red, 0, 0, 255}) {
			t.Errorf("mask pixel %d = %v", i, got)
		}
	}
	if _, err := ConfusionImage(pred, truth[:5], 2, 3); err == nil {
		t.Error("mismatched truth length accepted")
	}
	if _, err := MaskImage(truth, 0, 6); err == nil {
		t.Error("zero height accepted")
	}
}

func TestImageGrid(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 7))
	const tw, th, n, cols = 10, 8, 5, 3
	var tiles []image.Image
	for range n {
		s := make([]float32, tw*th)
		for i := range s {
			s[i] = r.Float32()
		}
		img, err := HeatmapColormap(s, th, tw, RedBlue)
		if err != nil {
			t.Fatal(err)
		}
		tiles = append(tiles, img)
	}
	labels := []string{"img 0", "img 1", "a very long label that must be cut", "img 3", "img 4"}
	path := filepath.Join(t.TempDir(), "grid", "maps.png")
	if err := ImageGrid(path, tiles, cols, labels); err != nil {
		t.Fatal(err)
	}
	img := decodePNG(t, path)
	// Layout computed independently: 4 px padding, 16 px label strip above each tile.
	wantW, wantH := 4+cols*(tw+4), 4+2*(th+16+4)
	if img.Bounds().Dx() != wantW || img.Bounds().Dy() != wantH {
		t.Fatalf("grid size %v, want %dx%d", img.Bounds().Size(), wantW, wantH)
	}
	for k, tile := range tiles {
		x0, y0 := 4+(k%cols)*(tw+4), 4+(k/cols)*(th+16+4)+16
		for y := range th {
			for x := range tw {
				got := color.RGBAModel.Convert(img.At(x0+x, y0+y))
				if want := tile.At(x, y); got != color.RGBAModel.Convert(want) {
					t.Fatalf("tile %d pixel (%d,%d) = %v, want %v", k, x, y, got, want)
				}
			}
		}
		// Some dark label pixels in the strip above each tile.
		dark := 0
		for y := y0 - 16; y < y0; y++ {
			for x := x0; x < x0+tw; x++ {
				if r, _, _, _ := img.At(x, y).RGBA(); r < 0x8000 {
					dark++
				}
			}
		}
		if dark == 0 {
			t.Errorf("tile %d: no label drawn", k)
		}
	}
	for _, tc := range []struct {
		name   string
		tiles  []image.Image
		cols   int
		labels []string
	}{
		{"no tiles", nil, 2, nil},
		{"zero cols", tiles, 0, nil},
		{"labels mismatch", tiles, 2, labels[:2]},
		{"nil tile", []image.Image{nil}, 1, nil},
	} {
		if err := ImageGrid(path, tc.tiles, tc.cols, tc.labels); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

func TestWriteMarkdown(t *testing.T) {
	dir := t.TempDir()
	r := Report{
		Title:   "AdaCLIP run | lentils",
		Summary: []KV{{"run", "exp1"}, {"seed", "42"}},
		Notes:   []string{"Metrics pooled over the whole epoch."},
		Tables: []Table{{
			Title:     "Metrics",
			RowHeader: "split",
			Columns:   []string{"iou", "auroc"},
			Rows:      []Row{{"val", []float64{0.123456, 0.5}}, {"test", []float64{math.NaN(), 0.987654321}}},
		}},
		Images: []ImageLink{{"ROC curve", "plots/roc.png"}, {"maps", "plots/anomaly maps.png"}},
	}
	path := filepath.Join(dir, "report.md")
	if err := WriteMarkdown(path, r); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"# AdaCLIP run \\| lentils\n",
		"| key | value |\n|---|---|\n| run | exp1 |\n| seed | 42 |\n",
		"Metrics pooled over the whole epoch.\n",
		"## Metrics\n\n| split | iou | auroc |\n|---|---:|---:|\n| val | 0.1235 | 0.5000 |\n| test | undefined | 0.9877 |\n",
		"![ROC curve](plots/roc.png)",
		"![maps](plots/anomaly%20maps.png)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	bad := r
	bad.Tables = []Table{{Columns: []string{"a", "b"}, Rows: []Row{{"x", []float64{1}}}}}
	if err := WriteMarkdown(filepath.Join(dir, "bad.md"), bad); err == nil || !strings.Contains(err.Error(), "1 values for 2 columns") {
		t.Errorf("mismatched row: err = %v", err)
	}
	abs := r
	abs.Images = []ImageLink{{"x", "/tmp/x.png"}}
	if err := WriteMarkdown(filepath.Join(dir, "abs.md"), abs); err == nil || !strings.Contains(err.Error(), "relative") {
		t.Errorf("absolute image path: err = %v", err)
	}
	for _, f := range []string{"bad.md", "abs.md"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s written despite the error", f)
		}
	}
}
