package infer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spectraclip/spectraclip/dataset"
)

// input is one cube of --input: its name in the outputs, its path in messages, and a loader
// that decodes it (into buf when that is long enough) with the NaN policy applied. The loader
// also returns the buffer to decode the next cube into once this one's values are no longer
// needed: the cube's own memory when it is buf or a fresh slice, buf itself when the cube is
// memory that a dataset keeps.
type input struct {
	name, path string
	load       func(buf []float32) (c *dataset.Cube, next []float32, err error)
	// dims tells the cube's size before it is read where a header or a manifest does.
	dims func() (h, w, c int, ok bool)
}

func unknownDims() (int, int, int, bool) { return 0, 0, 0, false }

// enviDims reads an ENVI header's size (not ok when it cannot be read: loading reports why).
func enviDims(path string) func() (int, int, int, bool) {
	return func() (int, int, int, bool) {
		hdr, _, err := dataset.ENVIPaths(path)
		if err != nil {
			return 0, 0, 0, false
		}
		h, err := dataset.ReadENVIHeader(hdr)
		if err != nil || h.Lines < 1 || h.Samples < 1 || h.Bands < 1 {
			return 0, 0, 0, false
		}
		return h.Lines, h.Samples, h.Bands, true
	}
}

// listInputs lists the cubes of --input (an ENVI header or data file, a scene file, a dataset
// directory or a folder of ENVI headers). Each loader applies the NaN policy: policy, or for a
// dataset directory its own nan_policy when policy is empty, else "error". ENVI cubes are
// checked block by block while they are decoded.
func listInputs(arg string, policy dataset.NaNPolicy) ([]input, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return nil, fmt.Errorf("--input: %w", err)
	}
	if !st.IsDir() {
		name := strings.TrimSuffix(filepath.Base(arg), filepath.Ext(arg))
		if _, _, err := dataset.ENVIPaths(arg); err == nil {
			return []input{{name: name, path: arg, load: enviLoader(arg, policy), dims: enviDims(arg)}}, nil
		}
		return []input{{name: name, path: arg, load: func(buf []float32) (*dataset.Cube, []float32, error) {
			c, _, err := dataset.LoadScene(arg, dataset.SceneOptions{})
			if err != nil {
				return nil, buf, err
			}
			return c, c.Data, checkFinite(c, arg, policy)
		}, dims: unknownDims}}, nil
	}
	if _, err := os.Stat(filepath.Join(arg, dataset.ManifestName)); err == nil {
		ds, err := dataset.OpenWith(arg, dataset.Options{NaNPolicy: policy})
		if err != nil {
			return nil, err
		}
		var out []input
		for _, f := range ds.Frames {
			id, path := f.ID, f.Path
			n := f.H * f.W * ds.Bands
			out = append(out, input{name: fmt.Sprintf("frame_%03d", id), path: path, load: func(buf []float32) (*dataset.Cube, []float32, error) {
				if cap(buf) < n {
					buf = make([]float32, n)
				}
				// The dataset applies its NaN policy while it decodes the frame.
				smp, err := ds.LoadInto(id, buf[:n])
				if err != nil {
					return nil, buf, err
				}
				c := &dataset.Cube{H: smp.H, W: smp.W, C: smp.C, Data: smp.Cube, Wavelengths: ds.Wavelengths, Source: path}
				if len(smp.Cube) > 0 && &smp.Cube[0] == &buf[0] {
					return c, smp.Cube, nil
				}
				return c, buf, nil // the dataset's own memory (a single capture): not ours to reuse
			}, dims: func() (int, int, int, bool) { return f.H, f.W, ds.Bands, true }})
		}
		return out, nil
	}
	hdrs, _ := filepath.Glob(filepath.Join(arg, "*.hdr"))
	sort.Strings(hdrs)
	if len(hdrs) == 0 {
		return nil, fmt.Errorf("--input %s: no dataset.yaml and no ENVI headers (*.hdr) found", arg)
	}
	var out []input
	for _, h := range hdrs {
		out = append(out, input{name: strings.TrimSuffix(filepath.Base(h), ".hdr"), path: h, load: enviLoader(h, policy), dims: enviDims(h)})
	}
	return out, nil
}

// enviLoader decodes an ENVI cube into the caller's buffer, checking NaN/Inf as it goes.
func enviLoader(path string, policy dataset.NaNPolicy) func([]float32) (*dataset.Cube, []float32, error) {
	return func(buf []float32) (*dataset.Cube, []float32, error) {
		c, err := dataset.ReadENVIWith(path, dataset.DecodeOptions{Into: buf[:cap(buf)], CheckFinite: true, NaNPolicy: policy})
		var nf *dataset.NonFiniteError
		if errors.As(err, &nf) {
			return nil, buf, nanError(path, nf.Value, nf.Row, nf.Col, nf.Band)
		}
		if err != nil {
			return nil, buf, err
		}
		return c, c.Data, nil
	}
}

func nanError(path string, v float32, row, col, band int) error {
	return fmt.Errorf("%s: value %v (NaN/Inf) at row %d, column %d, band %d; use --nan-policy zero (or nan_policy: zero in a dataset.yaml) to replace NaN/Inf with 0", path, v, row, col, band)
}

// checkFinite applies a NaN policy to a cube decoded without one: "zero" replaces NaN and
// ±Inf with 0, anything else fails at the first such value, naming the file and its position.
func checkFinite(c *dataset.Cube, path string, policy dataset.NaNPolicy) error {
	i := dataset.FirstNonFinite(c.Data)
	if i < 0 {
		return nil
	}
	if policy == dataset.NaNZero {
		for ; i < len(c.Data); i++ {
			if dataset.FirstNonFinite(c.Data[i:i+1]) == 0 {
				c.Data[i] = 0
			}
		}
		return nil
	}
	px, b := i/c.C, i%c.C
	return nanError(path, c.Data[i], px/c.W, px%c.W, b)
}
