// Package report renders training and evaluation results as PNG charts (gonum plot), image
// grids of anomaly maps, and a markdown summary that links them.
//
// Output is deterministic: map-keyed series are drawn in sorted key order with colours assigned
// by that order, so re-running a report over the same numbers produces identical files.
package report

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Pixel sizes of the charts. Curves get a wide canvas, ROC/PR a square one so that the unit
// square is not distorted.
const (
	LineWidthPx, LineHeightPx     = 800, 500
	SquareWidthPx, SquareHeightPx = 600, 600
	dpi                           = 96
)

// XY is one point of a line series.
type XY struct{ X, Y float64 }

// Curve is a ROC (X = false-positive rate, Y = true-positive rate) or PR (X = recall,
// Y = precision) curve. Area, when non-zero, is shown in the legend (AUROC or AP); ROCPlot
// computes it by the trapezoid rule when it is zero.
type Curve struct {
	X, Y []float64
	Area float64
}

// LinePlot draws one line per series (loss or IoU per epoch, learning rate per step) and writes
// the chart to path as a PNG of LineWidthPx × LineHeightPx.
func LinePlot(path, title, xlabel, ylabel string, series map[string][]XY) error {
	if len(series) == 0 {
		return fmt.Errorf("report: line plot %s: no series", path)
	}
	p := newPlot(title, xlabel, ylabel)
	p.Legend.Top = true
	for i, name := range slices.Sorted(maps.Keys(series)) {
		pts := series[name]
		if len(pts) == 0 {
			return fmt.Errorf("report: line plot %s: series %q is empty", path, name)
		}
		xys := make(plotter.XYs, len(pts))
		for j, pt := range pts {
			xys[j].X, xys[j].Y = pt.X, pt.Y
		}
		if err := addLine(p, name, xys, i, nil); err != nil {
			return fmt.Errorf("report: line plot %s: series %q: %w", path, name, err)
		}
	}
	return savePlot(p, path, LineWidthPx, LineHeightPx)
}

// ROCPlot draws ROC curves over the unit square with the chance diagonal for reference.
func ROCPlot(path string, curves map[string]Curve) error {
	return curvePlot(path, "ROC", "false positive rate", "true positive rate", "AUROC", curves, true)
}

// PRPlot draws precision–recall curves over the unit square.
func PRPlot(path string, curves map[string]Curve) error {
	return curvePlot(path, "Precision–recall", "recall", "precision", "AP", curves, false)
}

func curvePlot(path, title, xl, yl, areaName string, curves map[string]Curve, roc bool) error {
	if len(curves) == 0 {
		return fmt.Errorf("report: %s plot %s: no curves", title, path)
	}
	p := newPlot(title, xl, yl)
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = 0, 1, 0, 1
	if roc {
		diag, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: 1, Y: 1}})
		if err != nil {
			return err
		}
		diag.Color = color.Gray{Y: 160}
		diag.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		p.Add(diag)
	} else {
		p.Legend.Left = true
	}
	for i, name := range slices.Sorted(maps.Keys(curves)) {
		c := curves[name]
		if len(c.X) != len(c.Y) {
			return fmt.Errorf("report: %s plot %s: curve %q has %d x and %d y values", title, path, name, len(c.X), len(c.Y))
		}
		if len(c.X) < 2 {
			return fmt.Errorf("report: %s plot %s: curve %q needs at least 2 points, has %d", title, path, name, len(c.X))
		}
		xys := make(plotter.XYs, len(c.X))
		for j := range c.X {
			xys[j].X, xys[j].Y = c.X[j], c.Y[j]
		}
		area := c.Area
		if area == 0 && roc {
			area = trapezoid(c.X, c.Y)
		}
		label := name
		if area != 0 {
			label = fmt.Sprintf("%s (%s %.4f)", name, areaName, area)
		}
		if err := addLine(p, label, xys, i, nil); err != nil {
			return fmt.Errorf("report: %s plot %s: curve %q: %w", title, path, name, err)
		}
	}
	return savePlot(p, path, SquareWidthPx, SquareHeightPx)
}

// trapezoid integrates y over x in the order given (x need not be sorted; segments with
// decreasing x subtract, which is the signed area).
func trapezoid(x, y []float64) float64 {
	s := 0.0
	for i := 1; i < len(x); i++ {
		s += (x[i] - x[i-1]) * (y[i] + y[i-1]) / 2
	}
	return s
}

// BandPlot draws the mean spectrum of each class against wavelength (nm) and a dashed vertical
// line at each selected band, to show which bands a selector or mixer favoured.
func BandPlot(path string, wavelengths []float64, classMeans map[string][]float64, selected []float64) error {
	if len(wavelengths) < 2 {
		return fmt.Errorf("report: band plot %s: need at least 2 wavelengths, have %d", path, len(wavelengths))
	}
	if len(classMeans) == 0 {
		return fmt.Errorf("report: band plot %s: no class spectra", path)
	}
	p := newPlot("Class mean spectra and selected bands", "wavelength (nm)", "mean value")
	p.Legend.Top = true
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for i, name := range slices.Sorted(maps.Keys(classMeans)) {
		m := classMeans[name]
		if len(m) != len(wavelengths) {
			return fmt.Errorf("report: band plot %s: class %q has %d values for %d wavelengths", path, name, len(m), len(wavelengths))
		}
		xys := make(plotter.XYs, len(m))
		for j := range m {
			xys[j].X, xys[j].Y = wavelengths[j], m[j]
			ymin, ymax = math.Min(ymin, m[j]), math.Max(ymax, m[j])
		}
		if err := addLine(p, name, xys, i, nil); err != nil {
			return fmt.Errorf("report: band plot %s: class %q: %w", path, name, err)
		}
	}
	wmin, wmax := slices.Min(wavelengths), slices.Max(wavelengths)
	if ymin == ymax {
		ymin, ymax = ymin-0.5, ymax+0.5
	}
	for k, s := range selected {
		if math.IsNaN(s) || s < wmin || s > wmax {
			return fmt.Errorf("report: band plot %s: selected band %g nm outside the wavelength range [%g, %g]", path, s, wmin, wmax)
		}
		v, err := plotter.NewLine(plotter.XYs{{X: s, Y: ymin}, {X: s, Y: ymax}})
		if err != nil {
			return err
		}
		v.Color = color.Gray{Y: 90}
		v.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
		p.Add(v)
		if k == 0 {
			p.Legend.Add("selected bands", v)
		}
	}
	return savePlot(p, path, LineWidthPx, LineHeightPx)
}

func newPlot(title, xl, yl string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xl
	p.Y.Label.Text = yl
	p.Add(plotter.NewGrid())
	return p
}

func addLine(p *plot.Plot, name string, xys plotter.XYs, i int, dashes []vg.Length) error {
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color = plotutil.Color(i)
	l.Width = vg.Points(1.5)
	l.Dashes = dashes
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

func savePlot(p *plot.Plot, path string, wpx, hpx int) error {
	img := image.NewRGBA(image.Rect(0, 0, wpx, hpx))
	c := vgimg.NewWith(vgimg.UseImage(img), vgimg.UseDPI(dpi))
	p.Draw(draw.New(c))
	return SavePNG(path, c.Image())
}

// SavePNG encodes img as PNG at path, creating parent directories. The file is written under a
// temporary name and renamed, so a crash never leaves a truncated image behind.
func SavePNG(path string, img image.Image) error {
	if img == nil {
		return fmt.Errorf("report: %s: nil image", path)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return fmt.Errorf("report: encode %s: %w", path, err)
	}
	return writeFileAtomic(path, buf.Bytes())
}

func writeFileAtomic(path string, data []byte) error {
	if path == "" {
		return errors.New("report: empty output path")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}
