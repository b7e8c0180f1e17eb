package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
)

// SynthConfig controls GenerateSynthetic. Zero values of Bands, WavelengthMin, WavelengthMax,
// StoneRate, Coverage, BrownFraction, NoiseStd and Interleave take the defaults of
// DefaultSynthConfig; zero StoneFreeFrames, ValFrames and TestFrames mean none.
type SynthConfig struct {
	Frames int    `yaml:"frames"`
	Height int    `yaml:"height"`
	Width  int    `yaml:"width"`
	Seed   uint64 `yaml:"seed"`
	// StoneRate is the probability that an object is a stone in frames that have stones
	// (every such frame gets at least one).
	StoneRate float64 `yaml:"stone_rate"`
	Bands     int     `yaml:"bands"`
	// WavelengthMin and WavelengthMax bound the evenly spaced band centres (nm). The stone
	// signature sits at 860–885 nm, so a range ending below that has no usable stone cue.
	WavelengthMin float64 `yaml:"wavelength_min_nm"`
	WavelengthMax float64 `yaml:"wavelength_max_nm"`
	// StoneFreeFrames is how many training frames hold no stone at all.
	StoneFreeFrames int `yaml:"stone_free_frames"`
	// ValFrames and TestFrames are taken from the end of the frame list; the rest is train.
	ValFrames  int `yaml:"val_frames"`
	TestFrames int `yaml:"test_frames"`
	// Coverage is the fraction of the tray that objects cover.
	Coverage float64 `yaml:"coverage"`
	// BrownFraction is the share of brown lentils among lentils (stones mimic both kinds in
	// the same proportion).
	BrownFraction float64 `yaml:"brown_fraction"`
	// NoiseStd is the read-noise standard deviation in reflectance units at mid-range bands.
	NoiseStd float64 `yaml:"noise_std"`
	// Interleave of the written ENVI frames: "bip" (default), "bil" or "bsq".
	Interleave string `yaml:"interleave"`
}

// DefaultSynthConfig is the set `make train` uses: 12 frames of 128×128 with 61 bands
// (430–910 nm in 8 nm steps, like the Cubert XMR), 8 train / 2 val / 2 test frames, two of the
// training frames without stones.
func DefaultSynthConfig() SynthConfig {
	return SynthConfig{
		Frames:          12,
		Height:          128,
		Width:           128,
		Seed:            20260101,
		StoneRate:       0.04,
		Bands:           61,
		WavelengthMin:   430,
		WavelengthMax:   910,
		StoneFreeFrames: 2,
		ValFrames:       2,
		TestFrames:      2,
		Coverage:        0.55,
		BrownFraction:   0.5,
		NoiseStd:        0.004,
		Interleave:      "bip",
	}
}

func (cfg SynthConfig) withDefaults() SynthConfig {
	d := DefaultSynthConfig()
	if cfg.Bands == 0 {
		cfg.Bands = d.Bands
	}
	if cfg.WavelengthMin == 0 {
		cfg.WavelengthMin = d.WavelengthMin
	}
	if cfg.WavelengthMax == 0 {
		cfg.WavelengthMax = d.WavelengthMax
	}
	if cfg.StoneRate == 0 {
		cfg.StoneRate = d.StoneRate
	}
	if cfg.Coverage == 0 {
		cfg.Coverage = d.Coverage
	}
	if cfg.BrownFraction == 0 {
		cfg.BrownFraction = d.BrownFraction
	}
	if cfg.NoiseStd == 0 {
		cfg.NoiseStd = d.NoiseStd
	}
	if cfg.Interleave == "" {
		cfg.Interleave = d.Interleave
	}
	return cfg
}

// MaxSynthFrames bounds a synthetic set's frame count (synth --frames, data.synth.frames): at
// the default 128×128×61 that is already 40 GB of cubes.
const MaxSynthFrames = 10000

func (cfg SynthConfig) validate() error {
	switch {
	case cfg.Frames < 1 || cfg.Frames > MaxSynthFrames:
		return fmt.Errorf("synthetic config: frames = %d; must be in 1..%d", cfg.Frames, MaxSynthFrames)
	case cfg.Height < 24 || cfg.Width < 24:
		return fmt.Errorf("synthetic config: %d×%d is too small; height and width must be at least 24", cfg.Height, cfg.Width)
	case cfg.Bands < 3:
		return fmt.Errorf("synthetic config: bands = %d; need at least 3", cfg.Bands)
	case !(cfg.WavelengthMax > cfg.WavelengthMin) || cfg.WavelengthMin <= 0:
		return fmt.Errorf("synthetic config: wavelength range %v..%v nm is empty", cfg.WavelengthMin, cfg.WavelengthMax)
	case cfg.StoneRate < 0 || cfg.StoneRate > 1:
		return fmt.Errorf("synthetic config: stone_rate = %v; must be in 0..1", cfg.StoneRate)
	case cfg.Coverage <= 0 || cfg.Coverage > 0.9:
		return fmt.Errorf("synthetic config: coverage = %v; must be in (0, 0.9]", cfg.Coverage)
	case cfg.BrownFraction < 0 || cfg.BrownFraction > 1:
		return fmt.Errorf("synthetic config: brown_fraction = %v; must be in 0..1", cfg.BrownFraction)
	case cfg.NoiseStd < 0:
		return fmt.Errorf("synthetic config: noise_std = %v; must not be negative", cfg.NoiseStd)
	case cfg.ValFrames < 0 || cfg.TestFrames < 0 || cfg.ValFrames+cfg.TestFrames >= cfg.Frames:
		return fmt.Errorf("synthetic config: %d val + %d test frames leave no training frame out of %d", cfg.ValFrames, cfg.TestFrames, cfg.Frames)
	case cfg.StoneFreeFrames < 0 || cfg.StoneFreeFrames > cfg.Frames-cfg.ValFrames-cfg.TestFrames:
		return fmt.Errorf("synthetic config: stone_free_frames = %d; must be in 0..%d (the training frames)", cfg.StoneFreeFrames, cfg.Frames-cfg.ValFrames-cfg.TestFrames)
	}
	switch cfg.Interleave {
	case "bip", "bil", "bsq":
	default:
		return fmt.Errorf("synthetic config: interleave = %q; must be bip, bil or bsq", cfg.Interleave)
	}
	n, ok := checkedMul(maxElements, int64(cfg.Height), int64(cfg.Width), int64(cfg.Bands))
	if !ok {
		n = -1
	}
	return checkCubeSize("synthetic config", fmt.Sprintf("a %d×%d×%d frame", cfg.Height, cfg.Width, cfg.Bands), n)
}

// SynthWavelengths returns the band centres (nm) of a configuration.
func SynthWavelengths(cfg SynthConfig) []float32 {
	cfg = cfg.withDefaults()
	wl := make([]float32, cfg.Bands)
	for b := range wl {
		wl[b] = float32(cfg.WavelengthMin + float64(b)*(cfg.WavelengthMax-cfg.WavelengthMin)/float64(cfg.Bands-1))
	}
	return wl
}

// SynthSplits returns the frame ids of each split and the stone-free frames of a configuration.
func SynthSplits(cfg SynthConfig) (split Splits, stoneFree []int) {
	nTrain := cfg.Frames - cfg.ValFrames - cfg.TestFrames
	for i := 0; i < cfg.Frames; i++ {
		switch {
		case i < nTrain:
			split.Train = append(split.Train, i)
		case i < nTrain+cfg.ValFrames:
			split.Val = append(split.Val, i)
		default:
			split.Test = append(split.Test, i)
		}
	}
	for k := 0; k < cfg.StoneFreeFrames; k++ {
		stoneFree = append(stoneFree, int((float64(k)+0.5)*float64(nTrain)/float64(cfg.StoneFreeFrames)))
	}
	return split, stoneFree
}

// Reflectance models (λ in nm). Shapes follow published seed and mineral spectra loosely: dark
// seed coats absorb in the visible and turn transparent past a red edge near 720–740 nm; brown
// coats rise through the visible; iron-bearing stones show a narrow Fe³⁺ crystal-field
// absorption near 870 nm that lentils lack.
func gauss(x, mu, sigma float64) float64 { return math.Exp(-0.5 * sq((x-mu)/sigma)) }
func sigm(x, mu, w float64) float64      { return 1 / (1 + math.Exp(-(x-mu)/w)) }
func sq(x float64) float64               { return x * x }

func traySpectrum(l float64) float64 {
	return 0.58 + 0.05*sigm(l, 480, 25) - 0.02*gauss(l, 620, 50) + 0.03*(l-430)/480
}
func borderSpectrum(l float64) float64 {
	return 0.07 + 0.03*(l-430)/480 + 0.02*sigm(l, 700, 40)
}
func blackLentil(l, shift float64) float64 {
	return 0.040 + 0.015*gauss(l, 550, 50) + 0.36*sigm(l, 735+shift, 22)
}
func brownLentil(l, shift, hue float64) float64 {
	return 0.085 + 0.10*hue*sigm(l, 560, 35) + 0.10*sigm(l, 640+shift/2, 30) + 0.17*sigm(l, 735+shift, 25)
}

type synthObject struct {
	class      int32
	cx, cy     float64
	a, b, th   float64 // semi-axes and orientation for shading
	poly       []float64
	spec       []float64
	encodeMode int // 0 polygon, 1 compressed RLE, 2 uncompressed RLE
}

type synthFrame struct {
	cube   []float32
	labels []int32
	tray   []float64
	objs   []*synthObject
}

// genFrame renders frame idx; it depends only on (cfg, idx), so frames can be made in
// parallel and stay deterministic.
func genFrame(cfg SynthConfig, idx int, stones bool, wl []float64) *synthFrame {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x5eed0000+uint64(idx)))
	H, W, C := cfg.Height, cfg.Width, cfg.Bands
	fr := &synthFrame{labels: make([]int32, H*W), cube: make([]float32, H*W*C)}

	// The tray fills the frame but a margin, whose pixels stay unlabeled (class 0).
	m := math.Max(2, math.Round(0.04*float64(min(H, W))))
	x0, y0 := m+float64(rng.IntN(2)), m+float64(rng.IntN(2))
	x1, y1 := float64(W)-m-float64(rng.IntN(2)), float64(H)-m-float64(rng.IntN(2))
	fr.tray = []float64{x0, y0, x1, y0, x1, y1, x0, y1}
	_ = FillPolygon(fr.labels, H, W, fr.tray, ClassBackground)

	// Scatter objects by rejection sampling until the covered fraction is reached.
	trayArea := (x1 - x0) * (y1 - y0)
	covered := 0.0
	for attempt := 0; attempt < 4000 && covered < cfg.Coverage*trayArea; attempt++ {
		isStone := stones && rng.Float64() < cfg.StoneRate
		a := 3.4 + rng.Float64()*1.0
		bRatio := 0.75 + rng.Float64()*0.17
		if isStone {
			a = 3.6 + rng.Float64()*1.4
			bRatio = 0.7 + rng.Float64()*0.25
		}
		b := a * bRatio
		cx := x0 + a + rng.Float64()*(x1-x0-2*a)
		cy := y0 + a + rng.Float64()*(y1-y0-2*a)
		ok := true
		for _, o := range fr.objs {
			if math.Hypot(cx-o.cx, cy-o.cy) < 0.9*((a+b)/2+(o.a+o.b)/2) {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		o := &synthObject{class: ClassLentilsBlack, cx: cx, cy: cy, a: a, b: b, th: rng.Float64() * math.Pi}
		brown := rng.Float64() < cfg.BrownFraction
		if brown {
			o.class = ClassLentilsBrown
		}
		if isStone {
			o.class = ClassStone
		}
		nv, jitter := 18, 0.0
		if isStone {
			nv, jitter = 14, 0.12
		}
		for v := 0; v < nv; v++ {
			phi := 2 * math.Pi * float64(v) / float64(nv)
			rf := 1 + jitter*(2*rng.Float64()-1)
			ex, ey := a*math.Cos(phi)*rf, b*math.Sin(phi)*rf
			px := cx + ex*math.Cos(o.th) - ey*math.Sin(o.th)
			py := cy + ex*math.Sin(o.th) + ey*math.Cos(o.th)
			// Round as the JSON will hold them, so painting and rasterising agree exactly.
			o.poly = append(o.poly, math.Round(px*100)/100, math.Round(py*100)/100)
		}
		o.spec = objectSpectrum(rng, wl, brown, isStone)
		fr.objs = append(fr.objs, o)
		covered += math.Pi * a * b
	}
	if stones && len(fr.objs) > 0 {
		has := false
		for _, o := range fr.objs {
			has = has || o.class == ClassStone
		}
		if !has {
			o := fr.objs[rng.IntN(len(fr.objs))]
			o.spec = objectSpectrum(rng, wl, o.class == ClassLentilsBrown, true)
			o.class = ClassStone
		}
	}
	for i, o := range fr.objs {
		switch {
		case i%5 == 3:
			o.encodeMode = 1
		case i%7 == 5:
			o.encodeMode = 2
		}
	}

	// Paint objects in order; later ones cover earlier ones, as later annotations overwrite.
	owner := make([]int32, H*W)
	for i := range owner {
		owner[i] = -1
	}
	for i, o := range fr.objs {
		_ = scanPolygon(o.poly, H, W, func(r, c0, c1 int) {
			for c := c0; c < c1; c++ {
				fr.labels[r*W+c] = o.class
				owner[r*W+c] = int32(i)
			}
		})
	}

	// Illumination: frame brightness, a spatial gradient across the tray and a slight
	// spectral tilt of the residual illumination after white calibration.
	fb := 0.95 + 0.1*rng.Float64()
	gx := (0.12 + 0.13*rng.Float64())
	if rng.IntN(2) == 0 {
		gx = -gx
	}
	gy := 0.16 * (rng.Float64() - 0.5)
	tilt := 0.06 * (rng.Float64() - 0.5)
	illumSpec := make([]float64, C)
	tray := make([]float64, C)
	border := make([]float64, C)
	noiseScale := make([]float64, C)
	for b, l := range wl {
		illumSpec[b] = 1 + tilt*(l-670)/240
		tray[b] = traySpectrum(l)
		border[b] = borderSpectrum(l)
		// Silicon sensors are noisier at both ends of the range.
		noiseScale[b] = cfg.NoiseStd * (1 + 1.5*math.Pow((l-670)/240, 4))
	}
	phx, phy := rng.Float64()*2*math.Pi, rng.Float64()*2*math.Pi
	for r := 0; r < H; r++ {
		for c := 0; c < W; c++ {
			i := r*W + c
			xc, yc := float64(c)+0.5, float64(r)+0.5
			g := fb * (1 + gx*(xc/float64(W)-0.5) + gy*(yc/float64(H)-0.5))
			var base []float64
			shade := 1.0
			switch {
			case owner[i] >= 0:
				o := fr.objs[owner[i]]
				dx, dy := xc-o.cx, yc-o.cy
				u := (dx*math.Cos(o.th) + dy*math.Sin(o.th)) / o.a
				v := (-dx*math.Sin(o.th) + dy*math.Cos(o.th)) / o.b
				shade = 0.72 + 0.28*math.Sqrt(math.Max(0, 1-u*u-v*v))
				base = o.spec
			case fr.labels[i] == ClassBackground:
				shade = 1 + 0.015*math.Sin(0.11*xc+phx)*math.Sin(0.07*yc+phy)
				base = tray
			default:
				base = border
			}
			pix := fr.cube[i*C : (i+1)*C]
			for b := range pix {
				val := base[b] * shade * g * illumSpec[b]
				val += (noiseScale[b] + 0.01*val) * rng.NormFloat64()
				if val < 0 {
					val = 0
				}
				pix[b] = float32(val)
			}
		}
	}
	return fr
}

// objectSpectrum draws one object's reflectance: a black or brown lentil with its own
// brightness, red-edge position and hue, or a stone that copies a lentil's look and adds a
// narrow absorption near 870 nm.
func objectSpectrum(rng *rand.Rand, wl []float64, brown, stone bool) []float64 {
	k := math.Min(1.2, math.Max(0.8, 1+0.07*rng.NormFloat64()))
	shift := 6 * rng.NormFloat64()
	hue := 0.8 + 0.4*rng.Float64()
	depth := 0.22 + 0.10*rng.Float64()
	mu := 864 + 16*rng.Float64()
	sigma := 11 + 4*rng.Float64()
	s := make([]float64, len(wl))
	for b, l := range wl {
		if brown {
			s[b] = brownLentil(l, shift, hue)
		} else {
			s[b] = blackLentil(l, shift)
		}
		s[b] *= k
		if stone {
			s[b] *= 1 - depth*gauss(l, mu, sigma)
		}
	}
	return s
}

// COCO output types (only what the writer emits).
type cocoOutAnn struct {
	ID           int       `json:"id"`
	ImageID      int       `json:"image_id"`
	CategoryID   int32     `json:"category_id"`
	Segmentation any       `json:"segmentation"`
	Area         int       `json:"area"`
	BBox         []float64 `json:"bbox"`
	IsCrowd      int       `json:"iscrowd"`
}

type cocoOutRLE struct {
	Size   []int `json:"size"`
	Counts any   `json:"counts"`
}

// ErrDatasetExists is returned by GenerateSynthetic for a non-empty output directory.
var ErrDatasetExists = errors.New("output directory exists and is not empty")

// GenerateSynthetic writes a synthetic Lentils dataset to dir: frames/frame_NNN.hdr + .img
// (ENVI float32 reflectance), annotations.json (COCO), wavelengths.txt and dataset.yaml. It
// builds everything in a temporary sibling directory and puts it into place at the end
// (atomicfile.PutDir: synced, then renamed), so an interrupted run, or a crash, never leaves
// something that looks like a complete dataset. dir must not exist or be empty.
func GenerateSynthetic(dir string, cfg SynthConfig) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("synthetic dataset %s: %w", dir, ErrDatasetExists)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".partial-*")
	if err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := writeSynthetic(tmp, cfg); err != nil {
		return err
	}
	// An empty directory (e.g. made by mkdir) may stand in the way of the rename.
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		os.Remove(dir)
	}
	if err := atomicfile.PutDir(tmp, dir); err != nil {
		return fmt.Errorf("synthetic dataset %s: moving the finished set into place: %w", dir, err)
	}
	done = true
	return nil
}

func writeSynthetic(dir string, cfg SynthConfig) error {
	if err := os.MkdirAll(filepath.Join(dir, "frames"), 0o755); err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}
	wl32 := SynthWavelengths(cfg)
	wl := make([]float64, len(wl32))
	for i, v := range wl32 {
		wl[i] = float64(v)
	}
	splits, stoneFree := SynthSplits(cfg)
	frames := make([]*synthFrame, cfg.Frames)
	errs := make([]error, cfg.Frames)
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, runtime.GOMAXPROCS(0)))
	for i := 0; i < cfg.Frames; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			free := false
			for _, f := range stoneFree {
				free = free || f == i
			}
			fr := genFrame(cfg, i, !free, wl)
			base := filepath.Join(dir, "frames", fmt.Sprintf("frame_%03d", i))
			errs[i] = WriteENVI(base, &Cube{H: cfg.Height, W: cfg.Width, C: cfg.Bands, Data: fr.cube, Wavelengths: wl32},
				ENVIWriteOptions{DataType: ENVIFloat32, Interleave: cfg.Interleave,
					Description: fmt.Sprintf("synthetic Lentils frame %d (seed %d), reflectance", i, cfg.Seed)})
			fr.cube = nil // written; keep only what the annotations need
			frames[i] = fr
		}(i)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}

	// COCO annotations: the tray, then every object in painting order.
	type img struct {
		ID       int    `json:"id"`
		FileName string `json:"file_name"`
		Width    int    `json:"width"`
		Height   int    `json:"height"`
	}
	var imgs []img
	var anns []cocoOutAnn
	H, W := cfg.Height, cfg.Width
	mask := make([]int32, H*W)
	for i, fr := range frames {
		imgs = append(imgs, img{ID: i, FileName: fmt.Sprintf("frames/frame_%03d.hdr", i), Width: W, Height: H})
		polys := append([]*synthObject{{class: ClassBackground, poly: fr.tray}}, fr.objs...)
		for _, o := range polys {
			clear(mask)
			_ = FillPolygon(mask, H, W, o.poly, 1)
			area := 0
			var bm []bool
			if o.encodeMode != 0 {
				bm = make([]bool, H*W)
			}
			for k, v := range mask {
				if v != 0 {
					area++
					if bm != nil {
						bm[k] = true
					}
				}
			}
			a := cocoOutAnn{ID: len(anns) + 1, ImageID: i, CategoryID: o.class, Area: area, BBox: polyBBox(o.poly)}
			switch o.encodeMode {
			case 1:
				rle := EncodeRLE(bm, H, W)
				a.Segmentation = cocoOutRLE{Size: []int{H, W}, Counts: EncodeRLEString(rle.Counts)}
			case 2:
				rle := EncodeRLE(bm, H, W)
				a.Segmentation = cocoOutRLE{Size: []int{H, W}, Counts: rle.Counts}
				a.IsCrowd = 1
			default:
				a.Segmentation = [][]float64{o.poly}
			}
			anns = append(anns, a)
		}
	}
	var cats []COCOCategory
	for _, c := range LentilsCategories()[1:] {
		cats = append(cats, COCOCategory{ID: int64(c.ID), Name: c.Name, Supercategory: "lentils"})
	}
	js, err := json.Marshal(map[string]any{
		"info":        map[string]any{"description": "synthetic Lentils (spectraclip)", "seed": cfg.Seed},
		"images":      imgs,
		"annotations": anns,
		"categories":  cats,
	})
	if err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, "annotations.json"), js); err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}
	var wb strings.Builder
	for _, v := range wl32 {
		fmt.Fprintf(&wb, "%g\n", v)
	}
	if err := writeFileAtomic(filepath.Join(dir, "wavelengths.txt"), []byte(wb.String())); err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}
	man := Manifest{
		Name:        "synthetic-lentils",
		Format:      "envi",
		Bands:       cfg.Bands,
		Annotations: "annotations.json",
		NaNPolicy:   "error",
		Splits:      splits,
		Categories:  LentilsCategories(),
		Anomaly:     &AnomalySpec{Normal: []int{0, 1, 2, 4}, Anomaly: []int{ClassStone}},
		Generator:   &cfg,
		StoneFree:   stoneFree,
	}
	for _, v := range wl32 {
		man.Wavelengths = append(man.Wavelengths, float64(v))
	}
	for i := range frames {
		man.Frames = append(man.Frames, ManifestFrame{ID: i, File: fmt.Sprintf("frames/frame_%03d.hdr", i)})
	}
	y, err := yaml.Marshal(&man)
	if err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}
	// Written last: its presence marks the set complete.
	if err := writeFileAtomic(filepath.Join(dir, ManifestName), y); err != nil {
		return fmt.Errorf("synthetic dataset: %w", err)
	}
	return nil
}

func polyBBox(p []float64) []float64 {
	x0, y0, x1, y1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for i := 0; i+1 < len(p); i += 2 {
		x0, x1 = math.Min(x0, p[i]), math.Max(x1, p[i])
		y0, y1 = math.Min(y0, p[i+1]), math.Max(y1, p[i+1])
	}
	return []float64{x0, y0, math.Round((x1-x0)*100) / 100, math.Round((y1-y0)*100) / 100}
}
