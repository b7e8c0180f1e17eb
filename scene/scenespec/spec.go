// Package scenespec is a trainrun's data.scene: its keys (Spec, Parse) and the composition of
// a trainrun for a scene (LoadConfig with the scene Defaults). It depends on config, not on
// the trainer, so that the sweep can plan scene points without linking training.
package scenespec

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/spectraclip/spectraclip/internal/anynum"
)

// Spec is a trainrun's data.scene.
type Spec struct {
	Path     string // the capture: ENVI header or data file, .mat (v5), .npy or .npz
	CubeVar  string // cube variable of a .mat/.npz ("" = the first known pair)
	GTVar    string // ground-truth variable of a .mat/.npz, or of mask_path when it is a .mat
	MaskPath string // separate ground truth (.png, .npy, .mat, one-band ENVI)
	// Split is "auto" (default: "objects" for scenes of at most MaxWholeScenePixels pixels,
	// "spatial" tiles beyond), "objects", "none" (every pixel in every split: zero-shot
	// only), or a tiled rule for captures too large to run whole: "spatial" (tile columns
	// left to right to train, val, test by Fractions) or "checkerboard" (dataset.OpenScene's
	// rules).
	Split string
	// Tile is the side of the tiles of a tiled split (default 32).
	Tile int
	// Fractions are the train, val and test shares (default 0.5, 0.25, 0.25). Val 0 means
	// validation on the train pixels.
	Fractions [3]float64
	Block     int    // side of the normal-pixel blocks (default 8)
	Seed      *int64 // split seed; nil = training.seed
	NaNPolicy string // "error" (default) or "zero"
}

// DefaultFractions are the shares of the objects split.
var DefaultFractions = [3]float64{0.5, 0.25, 0.25}

// DefaultBlock is the side of the blocks normal pixels are assigned by.
const DefaultBlock = 8

var specKeys = []string{"path", "cube_var", "gt_var", "mask_path", "split", "fractions", "block", "tile", "seed", "nan_policy"}

// Tiled says whether the split cuts the scene into tiles (the data set's frames) instead of
// running it whole with a pixel split.
func (s Spec) Tiled() bool { return s.Split == "spatial" || s.Split == "checkerboard" }

// Parse reads data.scene; unknown keys and wrong types are errors naming the key.
func Parse(m map[string]any) (Spec, error) {
	s := Spec{Split: "auto", Fractions: DefaultFractions, Block: DefaultBlock, Tile: 32}
	str := func(k string, v any) (string, error) {
		x, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("data.scene.%s: want a string, got %v (%T)", k, v, v)
		}
		return x, nil
	}
	num := func(k string, v any) (float64, error) {
		if f, ok := anynum.Float(v); ok {
			return f, nil
		}
		return 0, fmt.Errorf("data.scene.%s: want a number, got %v (%T)", k, v, v)
	}
	pixels := func(k string, v any, dst *int) error {
		f, err := num(k, v)
		if err != nil {
			return err
		}
		*dst = int(f)
		if f < 1 || f != math.Trunc(f) {
			return fmt.Errorf("data.scene.%s: want a positive whole number of pixels, got %v", k, v)
		}
		return nil
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		if v == nil {
			continue
		}
		var err error
		switch k {
		case "path":
			s.Path, err = str(k, v)
		case "cube_var":
			s.CubeVar, err = str(k, v)
		case "gt_var":
			s.GTVar, err = str(k, v)
		case "mask_path":
			s.MaskPath, err = str(k, v)
		case "nan_policy":
			s.NaNPolicy, err = str(k, v)
		case "split":
			s.Split, err = str(k, v)
			s.Split = strings.ToLower(s.Split)
			if s.Split == "" {
				s.Split = "auto"
			}
			if err == nil && s.Split != "auto" && s.Split != "objects" && s.Split != "none" && !s.Tiled() {
				err = fmt.Errorf("data.scene.split: %q is not a rule (allowed: auto, objects, none, spatial, checkerboard)", s.Split)
			}
		case "tile":
			err = pixels(k, v, &s.Tile)
		case "block":
			err = pixels(k, v, &s.Block)
		case "seed":
			var f float64
			if f, err = num(k, v); err == nil {
				i := int64(f)
				s.Seed = &i
			}
		case "fractions":
			l, ok := v.([]any)
			if !ok || len(l) != 3 {
				return s, fmt.Errorf("data.scene.fractions: want three numbers [train, val, test], got %v", v)
			}
			for i := range 3 {
				if s.Fractions[i], err = num(k, l[i]); err != nil {
					return s, err
				}
			}
			f := s.Fractions
			if f[0] <= 0 || f[1] < 0 || f[2] <= 0 || math.Abs(f[0]+f[1]+f[2]-1) > 1e-6 {
				return s, fmt.Errorf("data.scene.fractions: %v must be non-negative, with positive train and test shares, and add up to 1", f)
			}
		default:
			return s, fmt.Errorf("data.scene.%s: unknown key (allowed: %s)", k, strings.Join(specKeys, ", "))
		}
		if err != nil {
			return s, err
		}
	}
	if s.Path == "" {
		return s, fmt.Errorf("data.scene.path: the scene file is required")
	}
	return s, nil
}

// Map is the data.scene form of s.
func (s Spec) Map() map[string]any {
	m := map[string]any{"path": s.Path}
	if s.Block > 0 {
		m["block"] = s.Block
	}
	if s.Tile > 0 {
		m["tile"] = s.Tile
	}
	if s.Fractions != ([3]float64{}) {
		m["fractions"] = []any{s.Fractions[0], s.Fractions[1], s.Fractions[2]}
	}
	for k, v := range map[string]string{"split": s.Split, "cube_var": s.CubeVar, "gt_var": s.GTVar, "mask_path": s.MaskPath, "nan_policy": s.NaNPolicy} {
		if v != "" {
			m[k] = v
		}
	}
	if s.Seed != nil {
		m["seed"] = int(*s.Seed)
	}
	return m
}
