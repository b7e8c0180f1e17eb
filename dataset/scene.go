package dataset

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
)

// SceneOptions controls OpenScene and LoadScene.
type SceneOptions struct {
	// CubeVar and GTVar name the variables of a .mat or .npz file; empty means the first known
	// pair (data/map, hsi/hsi_gt, data/groundtruth, data/gt).
	CubeVar, GTVar string
	// GroundTruth is a separate label file for ENVI or .npy cubes: .png, .npy, .mat (first
	// 2-D variable or GTVar) or a one-band ENVI .hdr.
	GroundTruth string
	// Wavelengths (nm) for sources without them (.mat, .npy).
	Wavelengths []float32
	// TileSize is the side of the square tiles OpenScene cuts (default 32). Rows and columns
	// left over at the bottom and right edges are not used.
	TileSize int
	// SplitRule assigns tiles to splits:
	//   "spatial" (default): tile columns left to right go to train, val, test by Fractions,
	//     with at least one column for every split whose fraction is positive;
	//   "checkerboard": tiles with even (row+column) go to train, the others to val when the
	//     tile column is even and to test when it is odd.
	SplitRule string
	// Fractions are the train, val and test shares for "spatial" (default 0.6, 0.2, 0.2).
	Fractions [3]float64
	NaNPolicy NaNPolicy
	// Normal and Anomaly set the dataset's default mapping; default: 0 normal, every other
	// ground-truth value an anomaly.
	Normal, Anomaly []int
}

// LoadScene reads a single capture and its ground truth (nil when there is none) from an ENVI
// header or data file, a .mat (v5), .npz or .npy file.
func LoadScene(path string, opts SceneOptions) (*Cube, *LabelImage, error) {
	ext := strings.ToLower(filepath.Ext(path))
	var cube *Cube
	var gt *LabelImage
	switch ext {
	case ".cu3s":
		return nil, nil, cu3sError(path)
	case ".mat", ".npz":
		var vars []*Array
		if ext == ".mat" {
			m, err := ReadMAT(path)
			if err != nil {
				return nil, nil, err
			}
			if len(m.Variables) == 0 {
				return nil, nil, fmt.Errorf("mat %s: no numeric variables; the file holds %s", path, m.describe())
			}
			vars = m.Variables
		} else {
			all, err := ReadNPZ(path)
			if err != nil {
				return nil, nil, err
			}
			for _, a := range all {
				vars = append(vars, a)
			}
		}
		ca, ga, err := FindSceneVars(vars, opts.CubeVar, opts.GTVar, path)
		if err != nil {
			return nil, nil, err
		}
		if cube, err = ca.ToCube(path); err != nil {
			return nil, nil, err
		}
		if ga != nil {
			if gt, err = ga.ToLabels(path); err != nil {
				return nil, nil, err
			}
		}
	case ".npy":
		a, err := ReadNPY(path)
		if err != nil {
			return nil, nil, err
		}
		a.Name = filepath.Base(path)
		if cube, err = a.ToCube(path); err != nil {
			return nil, nil, err
		}
	default:
		c, err := ReadENVI(path)
		if err != nil {
			return nil, nil, err
		}
		cube = c
	}
	if opts.GroundTruth != "" {
		if gt != nil {
			return nil, nil, fmt.Errorf("%s: has its own ground truth; do not also pass %s", path, opts.GroundTruth)
		}
		g, err := readLabelFile(opts.GroundTruth, opts.GTVar)
		if err != nil {
			return nil, nil, err
		}
		gt = g
	}
	if gt != nil && (gt.H != cube.H || gt.W != cube.W) {
		return nil, nil, fmt.Errorf("%s: ground truth is %d×%d but the cube is %d×%d (rows × columns)", gt.Source, gt.H, gt.W, cube.H, cube.W)
	}
	if opts.Wavelengths != nil {
		if len(opts.Wavelengths) != cube.C {
			return nil, nil, fmt.Errorf("%s: %d wavelengths given for %d bands", path, len(opts.Wavelengths), cube.C)
		}
		cube.Wavelengths = opts.Wavelengths
	}
	return cube, gt, nil
}

// readLabelFile reads a ground-truth map from .png, .npy, .mat or a one-band ENVI file.
func readLabelFile(path, varName string) (*LabelImage, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".png":
		return ReadPNGMask(path)
	case ".npy":
		a, err := ReadNPY(path)
		if err != nil {
			return nil, err
		}
		a.Name = filepath.Base(path)
		return a.ToLabels(path)
	case ".mat":
		m, err := ReadMAT(path)
		if err != nil {
			return nil, err
		}
		if varName != "" {
			a, err := m.Var(varName)
			if err != nil {
				return nil, err
			}
			return a.ToLabels(path)
		}
		for _, a := range m.Variables {
			if len(a.Shape) == 2 {
				return a.ToLabels(path)
			}
		}
		return nil, fmt.Errorf("mat %s: no 2-D variable to use as ground truth; the file holds %s", path, m.describe())
	default:
		c, err := ReadENVI(path)
		if err != nil {
			return nil, err
		}
		if c.C != 1 {
			return nil, fmt.Errorf("%s: a ground-truth ENVI file must have 1 band, not %d", path, c.C)
		}
		a := &Array{Name: filepath.Base(path), Shape: []int{c.H, c.W}, Data: c.Data}
		return a.ToLabels(path)
	}
}

// OpenScene turns one capture into a dataset of square tiles (frame id = tile row × tiles per
// row + tile column) assigned to splits by opts.SplitRule. The scene stays in memory.
func OpenScene(path string, opts SceneOptions) (*Dataset, error) {
	cube, gt, err := LoadScene(path, opts)
	if err != nil {
		return nil, err
	}
	return TileScene(path, cube, gt, opts)
}

// TileScene is OpenScene on a capture already loaded from path (LoadScene): the NaN policy,
// then the tiles and their splits by opts.
func TileScene(path string, cube *Cube, gt *LabelImage, opts SceneOptions) (*Dataset, error) {
	policy, err := parseNaNPolicy(string(opts.NaNPolicy))
	if err != nil {
		return nil, fmt.Errorf("scene %s: %w", path, err)
	}
	if err := applyNaNPolicy(cube, policy); err != nil {
		return nil, err
	}
	t := opts.TileSize
	if t == 0 {
		t = 32
	}
	if t < 1 || t > cube.H || t > cube.W {
		return nil, fmt.Errorf("scene %s: tile size %d does not fit the %d×%d scene", path, t, cube.H, cube.W)
	}
	ny, nx := cube.H/t, cube.W/t
	d := &Dataset{
		Name: filepath.Base(path), Root: filepath.Dir(path), Bands: cube.C, NaNPolicy: policy,
		byID: map[int]int{}, cache: map[int]*Sample{}, scene: cube, sceneL: gt,
		Normal: []int{0},
	}
	if opts.Normal != nil || opts.Anomaly != nil {
		d.Normal, d.Anomaly = opts.Normal, opts.Anomaly
	}
	d.setWavelengths(cube.Wavelengths)
	assign, err := tileSplits(opts, ny, nx)
	if err != nil {
		return nil, fmt.Errorf("scene %s: %w", path, err)
	}
	for ty := 0; ty < ny; ty++ {
		for tx := 0; tx < nx; tx++ {
			id := ty*nx + tx
			d.byID[id] = len(d.Frames)
			d.Frames = append(d.Frames, FrameInfo{ID: id, Path: path, H: t, W: t, Row0: ty * t, Col0: tx * t})
			switch assign(ty, tx) {
			case 0:
				d.Splits.Train = append(d.Splits.Train, id)
			case 1:
				d.Splits.Val = append(d.Splits.Val, id)
			default:
				d.Splits.Test = append(d.Splits.Test, id)
			}
		}
	}
	return d, nil
}

// tileSplits returns the split index (0 train, 1 val, 2 test) of tile (ty, tx).
func tileSplits(opts SceneOptions, ny, nx int) (func(ty, tx int) int, error) {
	switch strings.ToLower(opts.SplitRule) {
	case "", "spatial":
		f := opts.Fractions
		if f == [3]float64{} {
			f = [3]float64{0.6, 0.2, 0.2}
		}
		sum := f[0] + f[1] + f[2]
		if f[0] <= 0 || f[1] < 0 || f[2] < 0 || math.Abs(sum-1) > 1e-6 {
			return nil, fmt.Errorf("spatial split fractions %v must be non-negative with a positive train share and add up to 1", f)
		}
		cols := func(x float64) int {
			if x <= 0 {
				return 0
			}
			return max(1, int(math.Round(x*float64(nx))))
		}
		nVal, nTest := cols(f[1]), cols(f[2])
		nTrain := nx - nVal - nTest
		if nTrain < 1 {
			return nil, fmt.Errorf("%d tile columns cannot hold train, val and test shares %v; use smaller tiles", nx, f)
		}
		return func(_, tx int) int {
			switch {
			case tx < nTrain:
				return 0
			case tx < nTrain+nVal:
				return 1
			}
			return 2
		}, nil
	case "checkerboard":
		if ny*nx < 3 {
			return nil, fmt.Errorf("checkerboard split needs at least 3 tiles, the scene has %d", ny*nx)
		}
		return func(ty, tx int) int {
			if (ty+tx)%2 == 0 {
				return 0
			}
			if tx%2 == 0 {
				return 1
			}
			return 2
		}, nil
	}
	return nil, fmt.Errorf("split rule %q must be spatial or checkerboard", opts.SplitRule)
}

// tile copies one tile out of the in-memory scene.
func (d *Dataset) tile(f FrameInfo) *Sample {
	c := d.scene
	if f.Row0 == 0 && f.Col0 == 0 && f.H == c.H && f.W == c.W {
		// The whole scene: its values as they are (callers copy what they change).
		s := &Sample{FrameID: f.ID, H: f.H, W: f.W, C: c.C, Cube: c.Data, Owner: c.Owner}
		if d.sceneL != nil {
			s.ClassIDs = d.sceneL.IDs
		}
		return s
	}
	s := &Sample{FrameID: f.ID, H: f.H, W: f.W, C: c.C, Cube: make([]float32, f.H*f.W*c.C)}
	for r := 0; r < f.H; r++ {
		src := c.Data[((f.Row0+r)*c.W+f.Col0)*c.C : ((f.Row0+r)*c.W+f.Col0+f.W)*c.C]
		copy(s.Cube[r*f.W*c.C:], src)
	}
	if d.sceneL != nil {
		s.ClassIDs = make([]int32, f.H*f.W)
		for r := 0; r < f.H; r++ {
			copy(s.ClassIDs[r*f.W:(r+1)*f.W], d.sceneL.IDs[(f.Row0+r)*c.W+f.Col0:])
		}
	}
	return s
}

// WholeScene makes a dataset of one frame, the whole capture (frame id 0), that is in the
// train, val and test splits at once: a whole-scene run splits the scene by pixels (package
// scene), not by frames. The cube is checked with policy; name names the source in errors.
func WholeScene(name string, cube *Cube, gt *LabelImage, policy NaNPolicy) (*Dataset, error) {
	p, err := parseNaNPolicy(string(policy))
	if err != nil {
		return nil, fmt.Errorf("scene %s: %w", name, err)
	}
	if err := applyNaNPolicy(cube, p); err != nil {
		return nil, err
	}
	if gt != nil && (gt.H != cube.H || gt.W != cube.W) {
		return nil, fmt.Errorf("%s: ground truth is %d×%d but the cube is %d×%d (rows × columns)", name, gt.H, gt.W, cube.H, cube.W)
	}
	d := &Dataset{
		Name: filepath.Base(name), Root: filepath.Dir(name), Bands: cube.C, NaNPolicy: p,
		byID: map[int]int{0: 0}, cache: map[int]*Sample{}, scene: cube, sceneL: gt,
		Normal: []int{0},
		Frames: []FrameInfo{{ID: 0, Path: name, H: cube.H, W: cube.W}},
		Splits: Splits{Train: []int{0}, Val: []int{0}, Test: []int{0}},
	}
	d.setWavelengths(cube.Wavelengths)
	return d, nil
}
