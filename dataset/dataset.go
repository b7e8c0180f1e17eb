package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/sirupsen/logrus"
	"go.yaml.in/yaml/v3"
)

// ManifestName is the file that describes a dataset directory; GenerateSynthetic writes it
// last, so its presence means the directory is complete.
const ManifestName = "dataset.yaml"

// Manifest is the content of dataset.yaml.
type Manifest struct {
	Name   string `yaml:"name"`
	Format string `yaml:"format,omitempty"` // "envi" (the only format so far)
	Bands  int    `yaml:"bands,omitempty"`
	// Wavelengths in nm; used when the frame headers have none, checked against them otherwise.
	Wavelengths []float64       `yaml:"wavelengths,flow,omitempty"`
	Annotations string          `yaml:"annotations,omitempty"` // COCO file, relative to the root
	NaNPolicy   string          `yaml:"nan_policy,omitempty"`  // "error" (default) or "zero"
	Frames      []ManifestFrame `yaml:"frames"`
	Splits      Splits          `yaml:"splits"`
	Categories  []Category      `yaml:"categories,omitempty"`
	Anomaly     *AnomalySpec    `yaml:"anomaly,omitempty"`
	// StoneFree lists generated frames without stones (informational).
	StoneFree []int        `yaml:"stone_free_frames,flow,omitempty"`
	Generator *SynthConfig `yaml:"generator,omitempty"`
}

// ManifestFrame names one frame: its id (the COCO image id) and its ENVI header path relative
// to the dataset root.
type ManifestFrame struct {
	ID   int    `yaml:"id"`
	File string `yaml:"file"`
}

// Splits lists frame ids per split; the same frame may appear in several splits (the reference
// configuration uses identical val and test frames).
type Splits struct {
	Train []int `yaml:"train,flow"`
	Val   []int `yaml:"val,flow"`
	Test  []int `yaml:"test,flow"`
}

// AnomalySpec is the default binary mapping of a dataset (see BinaryAnomalyMask).
type AnomalySpec struct {
	Normal  []int `yaml:"normal_class_ids,flow"`
	Anomaly []int `yaml:"anomaly_class_ids,flow,omitempty"`
}

// NaNPolicy says what loading does with NaN or ±Inf values.
type NaNPolicy string

// NaN policies.
const (
	NaNError NaNPolicy = "error" // fail, naming the file and the first bad value
	NaNZero  NaNPolicy = "zero"  // replace with 0
)

func parseNaNPolicy(s string) (NaNPolicy, error) {
	switch NaNPolicy(strings.ToLower(s)) {
	case "", NaNError:
		return NaNError, nil
	case NaNZero:
		return NaNZero, nil
	}
	return "", fmt.Errorf("nan_policy %q must be \"error\" or \"zero\"", s)
}

// Options adjusts Open.
type Options struct {
	// NaNPolicy overrides the manifest's nan_policy when not empty.
	NaNPolicy NaNPolicy
	// Splits overrides the manifest's splits when not nil.
	Splits *Splits
}

// FrameInfo describes one frame of a dataset (or one tile of a single capture).
type FrameInfo struct {
	ID   int
	Path string // ENVI header; for tiles, the scene file
	H, W int
	// Row0 and Col0 locate a tile inside its scene (0 for whole frames).
	Row0, Col0 int
}

// Sample is one loaded frame: its cube (H×W×C channels-last) and class ids (H×W, nil when the
// dataset has no labels).
type Sample struct {
	FrameID  int
	H, W, C  int
	Cube     []float32
	ClassIDs []int32
	// Owner is the scene cube's Owner when Cube is that cube's memory (a whole scene).
	Owner any
}

// Dataset is an opened dataset: frame metadata and labels up front, cubes loaded on demand
// (or kept in memory after Preload).
type Dataset struct {
	Name  string
	Root  string
	Bands int
	// Wavelengths in nm; when WavelengthsKnown is false they are band numbers 1..Bands.
	Wavelengths      []float32
	WavelengthsKnown bool
	Frames           []FrameInfo
	Splits           Splits
	Categories       []Category
	// Normal and Anomaly are the dataset's default anomaly mapping.
	Normal, Anomaly []int
	NaNPolicy       NaNPolicy

	byID   map[int]int
	labels map[int][]int32 // nil map: unlabeled dataset
	scene  *Cube           // single-capture datasets keep the scene in memory
	sceneL *LabelImage

	mu    sync.Mutex
	cache map[int]*Sample
}

// Open reads a dataset directory: dataset.yaml, the ENVI headers of every frame, and the COCO
// annotations, which are rasterised to class-id maps now so that label problems surface before
// training starts.
func Open(root string) (*Dataset, error) { return OpenWith(root, Options{}) }

// ReadManifest reads and strictly decodes root/dataset.yaml (unknown keys are errors).
func ReadManifest(root string) (*Manifest, error) {
	path := filepath.Join(root, ManifestName)
	b, err := ReadRegularFile(path, "dataset", maxHeaderBytes)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("dataset %s: no %s (make one with `spectraclip synth` or point at a directory that has it): %w", root, ManifestName, errors.Unwrap(err))
		}
		return nil, err
	}
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("dataset %s: %w", path, oneLineYAML(err))
	}
	return &m, nil
}

// oneLineYAML joins the per-line reports of a yaml.TypeError ("unmarshal errors:\n  line 8:
// ...\n  line 9: ...") into one line, so that the CLI prints one error line.
func oneLineYAML(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return fmt.Errorf("%s", strings.Join(te.Errors, "; "))
	}
	return err
}

// OpenWith is Open with options.
func OpenWith(root string, opts Options) (*Dataset, error) {
	m, err := ReadManifest(root)
	if err != nil {
		return nil, err
	}
	mpath := filepath.Join(root, ManifestName)
	if m.Format != "" && !strings.EqualFold(m.Format, "envi") {
		return nil, fmt.Errorf("dataset %s: format %q is not supported (only envi)", mpath, m.Format)
	}
	d := &Dataset{Name: m.Name, Root: root, byID: map[int]int{}, cache: map[int]*Sample{}, Categories: m.Categories}
	if d.NaNPolicy, err = parseNaNPolicy(m.NaNPolicy); err != nil {
		return nil, fmt.Errorf("dataset %s: %w", mpath, err)
	}
	if opts.NaNPolicy != "" {
		if d.NaNPolicy, err = parseNaNPolicy(string(opts.NaNPolicy)); err != nil {
			return nil, fmt.Errorf("dataset options: %w", err)
		}
	}
	if len(m.Frames) == 0 {
		return nil, fmt.Errorf("dataset %s: lists no frames", mpath)
	}
	d.Bands = m.Bands
	var wl []float32
	for _, v := range m.Wavelengths {
		wl = append(wl, float32(v))
	}
	if len(wl) > 0 && d.Bands > 0 && len(wl) != d.Bands {
		return nil, fmt.Errorf("dataset %s: %d wavelengths for %d bands", mpath, len(wl), d.Bands)
	}
	firstBands := ""
	for _, f := range m.Frames {
		if f.ID < 0 {
			return nil, fmt.Errorf("dataset %s: frame id %d is negative", mpath, f.ID)
		}
		if _, dup := d.byID[f.ID]; dup {
			return nil, fmt.Errorf("dataset %s: frame id %d is listed twice", mpath, f.ID)
		}
		if f.File == "" {
			return nil, fmt.Errorf("dataset %s: frame %d has no file", mpath, f.ID)
		}
		path := f.File
		if !filepath.IsAbs(path) {
			path = filepath.Join(root, path)
		}
		hdrPath, dataPath, err := ENVIPaths(path)
		if err != nil {
			return nil, fmt.Errorf("dataset %s: frame %d: %w", mpath, f.ID, err)
		}
		h, err := ReadENVIHeader(hdrPath)
		if err != nil {
			return nil, fmt.Errorf("dataset %s: frame %d: %w", mpath, f.ID, err)
		}
		st, err := os.Stat(dataPath)
		if err == nil {
			err = regular(st, dataPath, "envi data")
		}
		if err != nil {
			return nil, fmt.Errorf("dataset %s: frame %d: %w", mpath, f.ID, err)
		}
		if err := checkCubeSize("envi data "+dataPath, fmt.Sprintf("a %d×%d×%d cube", h.Lines, h.Samples, h.Bands), int64(h.Lines)*int64(h.Samples)*int64(h.Bands)); err != nil {
			return nil, fmt.Errorf("dataset %s: frame %d: %w", mpath, f.ID, err)
		}
		if want := h.HeaderOffset + int64(h.Lines)*int64(h.Samples)*int64(h.Bands)*int64(h.DataType.Size()); st.Size() != want {
			return nil, fmt.Errorf("dataset %s: frame %d: data file %s has %d bytes but its header (%d×%d×%d %s, offset %d) implies %d",
				mpath, f.ID, dataPath, st.Size(), h.Lines, h.Samples, h.Bands, h.DataType, h.HeaderOffset, want)
		}
		if d.Bands == 0 {
			d.Bands = h.Bands
			firstBands = hdrPath
		}
		if h.Bands != d.Bands {
			src := "dataset.yaml"
			if firstBands != "" {
				src = firstBands
			}
			return nil, fmt.Errorf("dataset %s: frame %d (%s) has %d bands but %s has %d; all frames must have the same band count", mpath, f.ID, hdrPath, h.Bands, src, d.Bands)
		}
		if h.Wavelengths != nil {
			if wl == nil {
				wl = h.Wavelengths
			} else {
				for b := range wl {
					if math.Abs(float64(wl[b]-h.Wavelengths[b])) > 0.01 {
						return nil, fmt.Errorf("dataset %s: frame %d (%s): band %d is at %g nm but the dataset says %g nm", mpath, f.ID, hdrPath, b, h.Wavelengths[b], wl[b])
					}
				}
			}
		}
		d.byID[f.ID] = len(d.Frames)
		d.Frames = append(d.Frames, FrameInfo{ID: f.ID, Path: hdrPath, H: h.Lines, W: h.Samples})
	}
	d.setWavelengths(wl)

	if m.Annotations != "" {
		ap := m.Annotations
		if !filepath.IsAbs(ap) {
			ap = filepath.Join(root, ap)
		}
		coco, err := ReadCOCO(ap)
		if err != nil {
			return nil, fmt.Errorf("dataset %s: %w", mpath, err)
		}
		for _, a := range coco.Annotations {
			if _, ok := d.byID[int(a.ImageID)]; !ok || a.ImageID != int64(int(a.ImageID)) {
				return nil, fmt.Errorf("dataset %s: annotation %d in %s is for image id %d, which matches no frame id", mpath, a.ID, ap, a.ImageID)
			}
		}
		d.labels = map[int][]int32{}
		for _, f := range d.Frames {
			if _, ok := coco.Image(int64(f.ID)); !ok {
				d.labels[f.ID] = make([]int32, f.H*f.W) // no COCO image: all unlabeled, as the reference
				continue
			}
			lab, err := coco.Rasterize(int64(f.ID), f.H, f.W)
			if err != nil {
				return nil, fmt.Errorf("dataset %s: frame %d (%s): mask does not fit the cube: %w", mpath, f.ID, f.Path, err)
			}
			d.labels[f.ID] = lab
		}
		if len(d.Categories) == 0 {
			for _, c := range coco.Categories {
				d.Categories = append(d.Categories, Category{ID: int(c.ID), Name: c.Name})
			}
		}
	}
	if m.Anomaly != nil {
		d.Normal, d.Anomaly = m.Anomaly.Normal, m.Anomaly.Anomaly
	} else {
		d.Normal, d.Anomaly = []int{0, 1, 2, 4}, []int{ClassStone}
	}
	d.Splits = m.Splits
	if opts.Splits != nil {
		d.Splits = *opts.Splits
	}
	for _, s := range []struct {
		name string
		ids  []int
	}{{"train", d.Splits.Train}, {"val", d.Splits.Val}, {"test", d.Splits.Test}} {
		for _, id := range s.ids {
			if _, ok := d.byID[id]; !ok {
				return nil, fmt.Errorf("dataset %s: split %q lists frame id %d, which is not a frame", mpath, s.name, id)
			}
		}
	}
	warnSplitOverlaps(mpath, d.Splits)
	return d, nil
}

// warnSplitOverlaps warns about frames that the training split shares with val or test (the
// scores on those frames then measure memory, not generalisation) and about frames listed twice
// in one split (weighted double). Identical val and test lists are the reference's own
// configuration and are not reported.
func warnSplitOverlaps(where string, s Splits) {
	train := map[int]bool{}
	for _, sp := range []struct {
		name string
		ids  []int
	}{{"train", s.Train}, {"val", s.Val}, {"test", s.Test}} {
		seen := map[int]bool{}
		for _, id := range sp.ids {
			if seen[id] {
				logrus.Warnf("dataset %s: split %s lists frame %d twice", where, sp.name, id)
			}
			seen[id] = true
		}
		for _, id := range slices.Sorted(maps.Keys(seen)) {
			if sp.name == "train" {
				train[id] = true
			} else if train[id] {
				logrus.Warnf("dataset %s: frame %d is in both train and %s; its %s scores do not measure generalisation", where, id, sp.name, sp.name)
			}
		}
	}
}

func (d *Dataset) setWavelengths(wl []float32) {
	if len(wl) == d.Bands && d.Bands > 0 {
		d.Wavelengths, d.WavelengthsKnown = wl, true
		return
	}
	d.Wavelengths = make([]float32, d.Bands)
	for b := range d.Wavelengths {
		d.Wavelengths[b] = float32(b + 1)
	}
}

// Split returns the frame ids of "train", "val", "test" or "all".
func (d *Dataset) Split(name string) ([]int, error) {
	switch strings.ToLower(name) {
	case "train":
		return d.Splits.Train, nil
	case "val", "validation":
		return d.Splits.Val, nil
	case "test":
		return d.Splits.Test, nil
	case "all", "predict":
		ids := make([]int, len(d.Frames))
		for i, f := range d.Frames {
			ids[i] = f.ID
		}
		return ids, nil
	}
	return nil, fmt.Errorf("dataset %s: unknown split %q (train, val, test or all)", d.Name, name)
}

// Frame returns the metadata of frame id.
func (d *Dataset) Frame(id int) (FrameInfo, bool) {
	i, ok := d.byID[id]
	if !ok {
		return FrameInfo{}, false
	}
	return d.Frames[i], true
}

// Labeled reports whether the dataset has class ids.
func (d *Dataset) Labeled() bool { return d.labels != nil || d.sceneL != nil }

// Load returns frame id's cube and class ids. With Preload (or a single capture) it serves
// from memory; the returned slices must then be treated as read-only.
func (d *Dataset) Load(id int) (*Sample, error) {
	d.mu.Lock()
	s := d.cache[id]
	d.mu.Unlock()
	if s != nil {
		return s, nil
	}
	return d.load(id)
}

// LoadInto is Load that decodes a frame read from disk into dst when dst holds at least
// H·W·C values (the returned Cube is then dst's first H·W·C elements), so that a reader of
// many frames reuses its buffers. A frame served from memory (Preload, a single capture) is
// returned as Load returns it, without copying: compare the slices to tell.
func (d *Dataset) LoadInto(id int, dst []float32) (*Sample, error) {
	d.mu.Lock()
	s := d.cache[id]
	d.mu.Unlock()
	if s != nil {
		return s, nil
	}
	return d.loadInto(id, dst)
}

func (d *Dataset) load(id int) (*Sample, error) { return d.loadInto(id, nil) }

func (d *Dataset) loadInto(id int, dst []float32) (*Sample, error) {
	i, ok := d.byID[id]
	if !ok {
		return nil, fmt.Errorf("dataset %s: no frame with id %d", d.Name, id)
	}
	f := d.Frames[i]
	if d.scene != nil {
		return d.tile(f), nil
	}
	// The NaN policy is applied while each block is decoded (in cache), not in a second pass.
	c, err := ReadENVIWith(f.Path, DecodeOptions{Into: dst, CheckFinite: true, NaNPolicy: d.NaNPolicy})
	var nf *NonFiniteError
	if errors.As(err, &nf) {
		return nil, fmt.Errorf("frame %d: %w; set nan_policy: zero to replace NaN/Inf with 0", id, err)
	}
	if err != nil {
		return nil, fmt.Errorf("frame %d: %w", id, err)
	}
	if c.H != f.H || c.W != f.W || c.C != d.Bands {
		return nil, fmt.Errorf("frame %d (%s): cube is now %d×%d×%d but was %d×%d×%d when the dataset was opened", id, f.Path, c.H, c.W, c.C, f.H, f.W, d.Bands)
	}
	s := &Sample{FrameID: id, H: c.H, W: c.W, C: c.C, Cube: c.Data}
	if d.labels != nil {
		s.ClassIDs = d.labels[id]
	}
	return s, nil
}

// Preload loads the given frames (all when ids is nil) and keeps them in memory.
func (d *Dataset) Preload(ids []int) error {
	if ids == nil {
		ids, _ = d.Split("all")
	}
	for _, id := range ids {
		d.mu.Lock()
		have := d.cache[id] != nil
		d.mu.Unlock()
		if have {
			continue
		}
		s, err := d.load(id)
		if err != nil {
			return err
		}
		d.mu.Lock()
		d.cache[id] = s
		d.mu.Unlock()
	}
	return nil
}

// applyNaNPolicy checks a cube for NaN/Inf: an error naming the file and the first bad
// element, or replacement by zero.
func applyNaNPolicy(c *Cube, p NaNPolicy) error {
	if err := checkBlock(c.Data, 0, c.W, c.C, p, c.Source); err != nil {
		return fmt.Errorf("%w; set nan_policy: zero to replace NaN/Inf with 0", err)
	}
	return nil
}

// EnsureSynthetic makes sure root holds a dataset: it generates one with cfg when root does not
// exist (or is empty) and leaves a complete one alone. A non-empty root without dataset.yaml,
// or one whose frames are missing, is an error rather than something to overwrite.
func EnsureSynthetic(root string, cfg SynthConfig) error {
	if ok, err := datasetComplete(root); ok || err != nil {
		return err
	}
	if ents, err := os.ReadDir(root); err == nil && len(ents) > 0 {
		return fmt.Errorf("dataset %s: directory exists but has no %s; it may be an interrupted or foreign dataset: remove it or choose another path", root, ManifestName)
	}
	err := GenerateSynthetic(root, cfg)
	if err != nil {
		// Another process may have finished the same set first.
		if ok, err2 := datasetComplete(root); ok && err2 == nil {
			return nil
		}
	}
	return err
}

// datasetComplete reports whether root has a manifest whose frame files all exist.
func datasetComplete(root string) (bool, error) {
	if _, err := os.Stat(filepath.Join(root, ManifestName)); err != nil {
		return false, nil
	}
	m, err := ReadManifest(root)
	if err != nil {
		return false, err
	}
	for _, f := range m.Frames {
		p := f.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p)
		}
		if _, _, err := ENVIPaths(p); err != nil {
			return false, fmt.Errorf("dataset %s is incomplete: frame %d: %w", root, f.ID, err)
		}
	}
	return true, nil
}
