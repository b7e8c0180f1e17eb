package infer

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/internal/atomicfile"
	"github.com/spectraclip/spectraclip/report"
	"github.com/spectraclip/spectraclip/run"
)

// Outputs selects what infer writes per frame and at the end.
type Outputs struct {
	NPY  bool // <name>_scores.npy and <name>_decisions.npy, (H, W) arrays
	PNG  bool // <name>_scores.png (heat map) and <name>_decisions.png
	JSON bool // results.json (one entry per frame)
}

// AllOutputs is what infer writes by default (and always wrote).
var AllOutputs = Outputs{NPY: true, PNG: true, JSON: true}

// ParseOutputs reads a comma-separated list of npy, png and json.
func ParseOutputs(s string) (Outputs, error) {
	var o Outputs
	for _, f := range strings.Split(s, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "npy":
			o.NPY = true
		case "png":
			o.PNG = true
		case "json":
			o.JSON = true
		case "":
		default:
			return o, fmt.Errorf("--outputs %q: unknown output %q (allowed: npy, png, json)", s, f)
		}
	}
	if o == (Outputs{}) {
		return o, fmt.Errorf("--outputs %q: name at least one of npy, png, json", s)
	}
	return o, nil
}

func (o Outputs) String() string {
	var s []string
	for _, x := range []struct {
		on   bool
		name string
	}{{o.NPY, "npy"}, {o.PNG, "png"}, {o.JSON, "json"}} {
		if x.on {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, ",")
}

// frameOut is one frame of infer's results.json.
type frameOut struct {
	Name         string  `json:"name"`
	Source       string  `json:"source"`
	Height       int     `json:"height"`
	Width        int     `json:"width"`
	AnomalyScore float64 `json:"anomaly_score"`
	Flagged      float64 `json:"flagged_fraction"`
	Heatmap      string  `json:"heatmap_png,omitempty"`
	Decisions    string  `json:"decisions_png,omitempty"`
	DecisionsNPY string  `json:"decisions_npy,omitempty"`
	Scores       string  `json:"scores_npy,omitempty"`
}

// frameWriter encodes and writes one frame's maps at a time, reusing its buffers: the encoded
// bytes of each file go out in one write call, PNGs at png.BestSpeed.
type frameWriter struct {
	dir  string
	outs Outputs
	buf  []byte
	u8   []uint8
	heat *image.Paletted
	mask *image.Paletted
	png  png.Encoder
	pbuf bytes.Buffer
}

func newFrameWriter(dir string, outs Outputs) *frameWriter {
	w := &frameWriter{dir: dir, outs: outs}
	w.png = png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &onePool{}}
	return w
}

// onePool keeps the PNG encoder's deflate state between frames (one writer goroutine).
type onePool struct{ b *png.EncoderBuffer }

func (p *onePool) Get() *png.EncoderBuffer  { b := p.b; p.b = nil; return b }
func (p *onePool) Put(b *png.EncoderBuffer) { p.b = b }

// write writes one frame's maps (heat map and decisions PNG, (H, W) .npy scores and
// decisions, as selected) and names them in fo; dec is nil without a decisions port.
func (w *frameWriter) write(fo *frameOut, scores []float32, dec []bool) error {
	h, wd := fo.Height, fo.Width
	if len(scores) != h*wd || dec != nil && len(dec) != h*wd {
		return fmt.Errorf("%s: the pipeline returned %d scores and %d decisions for a %d×%d frame", fo.Source, len(scores), len(dec), h, wd)
	}
	if dec != nil {
		w.u8 = grow(w.u8, len(dec))
		nf := 0
		for i, v := range dec {
			if v {
				nf++
				w.u8[i] = 1
			} else {
				w.u8[i] = 0
			}
		}
		fo.Flagged = float64(nf) / float64(len(dec))
		if w.outs.PNG {
			fo.Decisions = fo.Name + "_decisions.png"
			if err := w.writePNG(fo.Decisions, w.maskImage(w.u8, h, wd)); err != nil {
				return err
			}
		}
		if w.outs.NPY {
			fo.DecisionsNPY = fo.Name + "_decisions.npy"
			if err := w.writeNPY(fo.DecisionsNPY, w.u8, h, wd); err != nil {
				return err
			}
		}
	}
	if w.outs.PNG {
		fo.Heatmap = fo.Name + "_scores.png"
		if err := w.writePNG(fo.Heatmap, w.heatmap(scores, h, wd)); err != nil {
			return err
		}
	}
	if w.outs.NPY {
		fo.Scores = fo.Name + "_scores.npy"
		if err := w.writeNPY(fo.Scores, scores, h, wd); err != nil {
			return err
		}
	}
	return nil
}

func (w *frameWriter) writeNPY(name string, v any, h, wd int) error {
	path := filepath.Join(w.dir, name)
	var err error
	if w.buf, err = dataset.AppendNPY(w.buf[:0], v, h, wd); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeNew(path, w.buf)
}

func (w *frameWriter) writePNG(name string, img image.Image) error {
	path := filepath.Join(w.dir, name)
	w.pbuf.Reset()
	if err := w.png.Encode(&w.pbuf, img); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return writeNew(path, w.pbuf.Bytes())
}

// infernoPalette is report's Inferno colour map sampled at 256 levels, as matplotlib renders a
// colour map (its maps are 256-entry tables).
var infernoPalette = func() color.Palette {
	p := make(color.Palette, 256)
	for i := range p {
		p[i] = report.ColormapAt(report.Inferno, float64(i)/255)
	}
	return p
}()

// heatmap renders scores as report.Heatmap does (per-image min-max, Inferno) but as an 8-bit
// paletted image of the map's 256 levels: a quarter of the bytes of RGBA, and the PNG encoder
// neither filters nor compresses four channels. The scores are finite (checked before).
func (w *frameWriter) heatmap(scores []float32, h, wd int) *image.Paletted {
	if w.heat == nil || w.heat.Rect.Dx() != wd || w.heat.Rect.Dy() != h {
		w.heat = image.NewPaletted(image.Rect(0, 0, wd, h), infernoPalette)
	}
	if len(scores) == 0 {
		return w.heat
	}
	lo, hi := scores[0], scores[0]
	for _, s := range scores {
		if s < lo {
			lo = s
		}
		if s > hi {
			hi = s
		}
	}
	scale := 0.0
	if d := float64(hi) - float64(lo); d > 0 && !math.IsInf(d, 0) {
		scale = 256 / d
	}
	pix := w.heat.Pix[:len(scores)]
	for i, s := range scores {
		k := int((float64(s) - float64(lo)) * scale)
		pix[i] = uint8(min(max(k, 0), 255))
	}
	return w.heat
}

// maskPalette draws decisions as report.MaskImage does: red on black.
var maskPalette = color.Palette{color.RGBA{0, 0, 0, 255}, color.RGBA{255, 0, 0, 255}}

// maskImage is the decisions as a two-colour paletted image (the PNG encoder then writes one
// bit per pixel).
func (w *frameWriter) maskImage(u8 []uint8, h, wd int) *image.Paletted {
	if w.mask == nil || w.mask.Rect.Dx() != wd || w.mask.Rect.Dy() != h {
		w.mask = image.NewPaletted(image.Rect(0, 0, wd, h), maskPalette)
	}
	copy(w.mask.Pix, u8)
	return w.mask
}

// writeNew writes a new file inside the staging folder in one write call. No temporary name
// and no fsync per file: the folder is published (synced and renamed, by publish) only when
// every frame is written.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return atomicfile.DiskFull(path, err)
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		if de := atomicfile.DiskFull(path, werr); de != werr {
			return de
		}
		return fmt.Errorf("%s: %w", path, werr)
	}
	return nil
}

// publish moves a finished staging folder to out, its files synced first: in one rename when
// out does not exist (atomicfile.PutDir), else file by file into it with results.json last
// (atomicfile.MoveInto, noting each new path in made, so that a failure part-way removes
// what this command added and nothing else).
func publish(stage, out string, made *run.OutputDir) error {
	if _, err := os.Lstat(out); errors.Is(err, fs.ErrNotExist) {
		if err := atomicfile.PutDir(stage, out); err != nil {
			return fmt.Errorf("--out %s: %w", out, err)
		}
		return nil
	}
	ents, err := os.ReadDir(stage)
	if err != nil {
		return err
	}
	sort.SliceStable(ents, func(i, j int) bool { return ents[j].Name() == "results.json" && ents[i].Name() != "results.json" })
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	if err := atomicfile.MoveInto(stage, out, names, func(dst string) { made.Note(dst) }); err != nil {
		return fmt.Errorf("--out %s: %w", out, err)
	}
	return os.Remove(stage)
}

func grow[E any](s []E, n int) []E {
	if cap(s) < n {
		return make([]E, n)
	}
	return s[:n]
}
