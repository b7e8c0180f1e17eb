package report

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Colormap selects how Heatmap turns normalised scores into colours.
type Colormap int

const (
	// Inferno approximates matplotlib's perceptually uniform "inferno" (black → purple → orange →
	// pale yellow), the map the reference ScoreHeatmapVisualizer uses.
	Inferno Colormap = iota
	// RedBlue is the reference TensorBoard heatmap: red = s, blue = 1 − s, green 0.
	RedBlue
	// Gray maps s to a gray level.
	Gray
)

// infernoStops samples matplotlib's inferno at 0, 1/8, …, 1; values between are interpolated
// linearly in sRGB, which is close enough for a report figure.
var infernoStops = [9][3]float64{
	{0, 0, 4}, {31, 12, 72}, {85, 15, 109}, {136, 34, 106}, {186, 54, 85},
	{227, 89, 51}, {249, 140, 10}, {249, 201, 50}, {252, 255, 164},
}

// ColormapAt returns the colour of s in [0,1] (clamped) under cm.
func ColormapAt(cm Colormap, s float64) color.RGBA {
	if !(s > 0) {
		s = 0
	}
	s = math.Min(s, 1)
	to8 := func(v float64) uint8 { return uint8(math.Round(math.Max(0, math.Min(255, v)))) }
	switch cm {
	case RedBlue:
		return color.RGBA{to8(255 * s), 0, to8(255 * (1 - s)), 255}
	case Gray:
		g := to8(255 * s)
		return color.RGBA{g, g, g, 255}
	}
	x := s * 8
	i := min(int(x), 7)
	f := x - float64(i)
	a, b := infernoStops[i], infernoStops[i+1]
	return color.RGBA{to8(a[0] + f*(b[0]-a[0])), to8(a[1] + f*(b[1]-a[1])), to8(a[2] + f*(b[2]-a[2])), 255}
}

func checkDims(what string, n, h, w int) error {
	if h <= 0 || w <= 0 {
		return fmt.Errorf("report: %s size %dx%d must be positive", what, h, w)
	}
	if n != h*w {
		return fmt.Errorf("report: %s of %dx%d needs %d values, got %d", what, h, w, h*w, n)
	}
	return nil
}

// Heatmap renders a row-major h×w score map with the Inferno colormap after per-image min-max
// normalisation (as the reference visualisers do), so that every map uses the full colour range.
func Heatmap(scores []float32, h, w int) (*image.RGBA, error) {
	return HeatmapColormap(scores, h, w, Inferno)
}

// HeatmapColormap is Heatmap with an explicit colormap. A constant map renders as the colour of
// 0; NaN scores are ignored by the min-max and drawn as the colour of 0.
func HeatmapColormap(scores []float32, h, w int, cm Colormap) (*image.RGBA, error) {
	if err := checkDims("heatmap", len(scores), h, w); err != nil {
		return nil, err
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range scores {
		if v := float64(s); !math.IsNaN(v) {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	scale := 0.0
	if hi > lo && !math.IsInf(hi-lo, 0) {
		scale = 1 / (hi - lo)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i, s := range scores {
		v := (float64(s) - lo) * scale
		if math.IsNaN(v) {
			v = 0
		}
		img.SetRGBA(i%w, i/w, ColormapAt(cm, v))
	}
	return img, nil
}

// MaskImage renders a row-major h×w boolean mask as red on black, the reference's ground-truth
// mask artifact.
func MaskImage(mask []bool, h, w int) (*image.RGBA, error) {
	if err := checkDims("mask", len(mask), h, w); err != nil {
		return nil, err
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i, m := range mask {
		c := color.RGBA{0, 0, 0, 255}
		if m {
			c.R = 255
		}
		img.SetRGBA(i%w, i/w, c)
	}
	return img, nil
}

// Colours of ConfusionImage, as in the reference AnomalyMask overlay.
var (
	ColorTP = color.RGBA{0, 200, 0, 255}
	ColorFP = color.RGBA{230, 0, 0, 255}
	ColorFN = color.RGBA{240, 220, 0, 255}
	ColorTN = color.RGBA{0, 0, 0, 255}
)

// ConfusionImage colours each pixel by its outcome (TP green, FP red, FN yellow, TN black), which
// shows at a glance where a decider over- or under-segments.
func ConfusionImage(pred, truth []bool, h, w int) (*image.RGBA, error) {
	if err := checkDims("confusion image", len(pred), h, w); err != nil {
		return nil, err
	}
	if len(truth) != len(pred) {
		return nil, fmt.Errorf("report: confusion image: %d predictions but %d targets", len(pred), len(truth))
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i, p := range pred {
		c := ColorTN
		switch t := truth[i]; {
		case p && t:
			c = ColorTP
		case p:
			c = ColorFP
		case t:
			c = ColorFN
		}
		img.SetRGBA(i%w, i/w, c)
	}
	return img, nil
}

// Grid layout constants (pixels).
const (
	gridPad    = 4
	gridLabelH = 16
)

// GridImage composes tiles row by row into cols columns on a white background, each tile in a cell
// the size of the largest tile, with its label (if labels is non-nil) above it. Labels are
// drawn in a 7×13 bitmap font and cut to the cell width.
func GridImage(tiles []image.Image, cols int, labels []string) (*image.RGBA, error) {
	if len(tiles) == 0 {
		return nil, fmt.Errorf("report: image grid: no tiles")
	}
	if cols <= 0 {
		return nil, fmt.Errorf("report: image grid: cols = %d, want > 0", cols)
	}
	if labels != nil && len(labels) != len(tiles) {
		return nil, fmt.Errorf("report: image grid: %d labels for %d tiles", len(labels), len(tiles))
	}
	cw, ch := 0, 0
	for i, t := range tiles {
		if t == nil || t.Bounds().Empty() {
			return nil, fmt.Errorf("report: image grid: tile %d is empty", i)
		}
		cw, ch = max(cw, t.Bounds().Dx()), max(ch, t.Bounds().Dy())
	}
	lh := 0
	if labels != nil {
		lh = gridLabelH
	}
	cols = min(cols, len(tiles))
	rows := (len(tiles) + cols - 1) / cols
	W := gridPad + cols*(cw+gridPad)
	H := gridPad + rows*(ch+lh+gridPad)
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	face := basicfont.Face7x13
	maxChars := cw / 7
	for i, t := range tiles {
		x0 := gridPad + (i%cols)*(cw+gridPad)
		y0 := gridPad + (i/cols)*(ch+lh+gridPad)
		r := image.Rect(x0, y0+lh, x0+t.Bounds().Dx(), y0+lh+t.Bounds().Dy())
		draw.Draw(img, r, t, t.Bounds().Min, draw.Over)
		if labels == nil {
			continue
		}
		text := []rune(labels[i])
		if len(text) > maxChars {
			text = text[:max(0, maxChars)]
		}
		d := font.Drawer{Dst: img, Src: image.Black, Face: face, Dot: fixed.P(x0, y0+lh-4)}
		d.DrawString(string(text))
	}
	return img, nil
}

// ImageGrid writes GridImage(tiles, cols, labels) to path as a PNG.
func ImageGrid(path string, tiles []image.Image, cols int, labels []string) error {
	img, err := GridImage(tiles, cols, labels)
	if err != nil {
		return fmt.Errorf("%w (writing %s)", err, path)
	}
	return SavePNG(path, img)
}
