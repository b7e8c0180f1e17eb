package dataset

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// handDataset writes a tiny dataset by hand: frames of H×W×C with random values, a COCO file
// with one rectangle per frame, and a manifest; mutate may change anything before writing.
type handDataset struct {
	dir      string
	H, W, C  int
	frames   []*Cube
	coco     map[string]any
	manifest Manifest
}

func newHandDataset(t *testing.T, n, H, W, C int) *handDataset {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), uint64(H*W*C)))
	h := &handDataset{dir: t.TempDir(), H: H, W: W, C: C}
	var images, anns []map[string]any
	for i := 0; i < n; i++ {
		c := &Cube{H: H, W: W, C: C, Data: make([]float32, H*W*C), Wavelengths: make([]float32, C)}
		for k := range c.Data {
			c.Data[k] = float32(rng.Float64())
		}
		for b := range c.Wavelengths {
			c.Wavelengths[b] = float32(500 + 10*b)
		}
		h.frames = append(h.frames, c)
		images = append(images, map[string]any{"id": i, "width": W, "height": H})
		anns = append(anns, map[string]any{"id": i + 1, "image_id": i, "category_id": 3,
			"segmentation": [][]float64{{1, 1, float64(W - 1), 1, float64(W - 1), 2, 1, 2}}})
		h.manifest.Frames = append(h.manifest.Frames, ManifestFrame{ID: i, File: fmt.Sprintf("f%d.hdr", i)})
	}
	h.coco = map[string]any{"images": images, "annotations": anns, "categories": []map[string]any{{"id": 3, "name": "Stone"}}}
	h.manifest.Name = "hand"
	h.manifest.Annotations = "coco.json"
	h.manifest.Splits = Splits{Train: []int{0}, Val: []int{1}, Test: []int{1}}
	return h
}

func (h *handDataset) write(t *testing.T) string {
	t.Helper()
	for i, c := range h.frames {
		if err := WriteENVI(filepath.Join(h.dir, fmt.Sprintf("f%d", i)), c, ENVIWriteOptions{Interleave: "bsq"}); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := json.Marshal(h.coco)
	if err := os.WriteFile(filepath.Join(h.dir, "coco.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf("name: %s\nannotations: %s\nnan_policy: %q\nsplits: {train: %v, val: %v, test: %v}\nframes:\n",
		h.manifest.Name, h.manifest.Annotations, h.manifest.NaNPolicy, ids(h.manifest.Splits.Train), ids(h.manifest.Splits.Val), ids(h.manifest.Splits.Test))
	for _, f := range h.manifest.Frames {
		y += fmt.Sprintf("  - {id: %d, file: %s}\n", f.ID, f.File)
	}
	if err := os.WriteFile(filepath.Join(h.dir, ManifestName), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return h.dir
}

func ids(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(s, ", ") + "]"
}

func TestOpenHandDataset(t *testing.T) {
	h := newHandDataset(t, 3, 5, 6, 4)
	d, err := Open(h.write(t))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range h.frames {
		s, err := d.Load(i)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(s.Cube, want.Data) {
			t.Fatalf("frame %d cube differs from what was written", i)
		}
		for r := 0; r < 5; r++ {
			for c := 0; c < 6; c++ {
				wantID := int32(0)
				if r == 1 && c >= 1 && c < 5 {
					wantID = 3
				}
				if s.ClassIDs[r*6+c] != wantID {
					t.Fatalf("frame %d label (%d,%d) = %d, want %d", i, r, c, s.ClassIDs[r*6+c], wantID)
				}
			}
		}
	}
	if d.Wavelengths[3] != 530 {
		t.Fatalf("wavelengths %v", d.Wavelengths)
	}
	all, _ := d.Split("all")
	if !slices.Equal(all, []int{0, 1, 2}) {
		t.Fatalf("all = %v", all)
	}
}

// TestOpenBadInput covers the errors a user meets with a broken dataset directory: each must
// name the file (or frame) and the problem.
func TestOpenBadInput(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, h *handDataset)
		after  func(t *testing.T, dir string) // runs after writing
		want   []string
	}{
		{name: "band count differs", mutate: func(t *testing.T, h *handDataset) {
			h.frames[2] = &Cube{H: 5, W: 6, C: 3, Data: make([]float32, 90)}
		}, want: []string{"frame 2", "f2.hdr", "has 3 bands", "f0.hdr", "has 4"}},
		{name: "truncated data", after: func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "f1.img"), 50); err != nil {
				t.Fatal(err)
			}
		}, want: []string{"frame 1", "f1.img", "has 50 bytes", "implies 480"}},
		{name: "mask size mismatch", mutate: func(t *testing.T, h *handDataset) {
			h.coco["images"].([]map[string]any)[1]["width"] = 7
		}, want: []string{"frame 1", "mask does not fit the cube", "image 1 is 5×7", "cube is 5×6"}},
		{name: "annotation for a missing frame", mutate: func(t *testing.T, h *handDataset) {
			h.coco["images"] = append(h.coco["images"].([]map[string]any), map[string]any{"id": 17, "width": 6, "height": 5})
			h.coco["annotations"] = append(h.coco["annotations"].([]map[string]any), map[string]any{"id": 99, "image_id": 17, "category_id": 3, "segmentation": []any{}})
		}, want: []string{"annotation 99", "coco.json", "image id 17", "matches no frame"}},
		{name: "split names a missing frame", mutate: func(t *testing.T, h *handDataset) {
			h.manifest.Splits.Test = []int{8}
		}, want: []string{"dataset.yaml", "split \"test\"", "frame id 8"}},
		{name: "unknown nan policy", mutate: func(t *testing.T, h *handDataset) {
			h.manifest.NaNPolicy = "ignore"
		}, want: []string{"dataset.yaml", "nan_policy \"ignore\""}},
		{name: "unknown dtype in header", after: func(t *testing.T, dir string) {
			p := filepath.Join(dir, "f0.hdr")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), "data type = 4", "data type = 8", 1)), 0o644)
		}, want: []string{"frame 0", "f0.hdr", "data type 8"}},
		{name: "unknown manifest key", after: func(t *testing.T, dir string) {
			p := filepath.Join(dir, ManifestName)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, append(b, []byte("batchsize: 3\n")...), 0o644)
		}, want: []string{"dataset.yaml", "batchsize"}},
		{name: "cu3s frame", mutate: func(t *testing.T, h *handDataset) {
			h.manifest.Frames[0].File = "session.cu3s"
		}, want: []string{"session.cu3s", "cuvis SDK", "ENVI"}},
		{name: "missing frame file", after: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "f2.img"))
		}, want: []string{"frame 2", "no data file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHandDataset(t, 3, 5, 6, 4)
			if tc.mutate != nil {
				tc.mutate(t, h)
			}
			dir := h.write(t)
			if tc.after != nil {
				tc.after(t, dir)
			}
			_, err := Open(dir)
			mustContain(t, err, tc.want...)
		})
	}
}

func TestNaNPolicy(t *testing.T) {
	for _, policy := range []string{"error", "zero"} {
		t.Run(policy, func(t *testing.T) {
			h := newHandDataset(t, 2, 5, 6, 4)
			h.frames[1].Data[(2*6+3)*4+1] = float32(math.NaN())
			h.frames[1].Data[(4*6+5)*4+3] = float32(math.Inf(-1))
			h.manifest.NaNPolicy = policy
			d, err := Open(h.write(t))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Load(0); err != nil {
				t.Fatal(err)
			}
			s, err := d.Load(1)
			if policy == "error" {
				mustContain(t, err, "frame 1", "f1.img", "NaN at row 2, column 3, band 1", "nan_policy: zero")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Cube[(2*6+3)*4+1] != 0 || s.Cube[(4*6+5)*4+3] != 0 || s.Cube[0] != h.frames[1].Data[0] {
				t.Fatal("NaN/Inf not replaced by zero, or other values changed")
			}
		})
	}
	// The option overrides the manifest.
	h := newHandDataset(t, 2, 5, 6, 4)
	h.frames[0].Data[0] = float32(math.Inf(1))
	d, err := OpenWith(h.write(t), Options{NaNPolicy: NaNZero})
	if err != nil {
		t.Fatal(err)
	}
	if s, err := d.Load(0); err != nil || s.Cube[0] != 0 {
		t.Fatalf("override: %v", err)
	}
}

func TestOpenSceneRealABU(t *testing.T) {
	if _, err := os.Stat(realMAT); err != nil {
		t.Skipf("skipping: real scene not available (%v)", err)
	}
	for _, rule := range []string{"spatial", "checkerboard"} {
		d, err := OpenScene(realMAT, SceneOptions{TileSize: 32, SplitRule: rule})
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Frames) != 9 || d.Bands != 205 || d.WavelengthsKnown {
			t.Fatalf("%s: %d tiles, %d bands", rule, len(d.Frames), d.Bands)
		}
		want := map[string]Splits{
			"spatial":      {Train: []int{0, 3, 6}, Val: []int{1, 4, 7}, Test: []int{2, 5, 8}},
			"checkerboard": {Train: []int{0, 2, 4, 6, 8}, Val: []int{3, 5}, Test: []int{1, 7}},
		}[rule]
		if fmt.Sprint(d.Splits) != fmt.Sprint(want) {
			t.Fatalf("%s splits %v, want %v", rule, d.Splits, want)
		}
	}
	cube, gt, err := LoadScene(realMAT, SceneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := OpenScene(realMAT, SceneOptions{TileSize: 32})
	anom := 0
	for _, f := range d.Frames {
		s, err := d.Load(f.ID)
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r < 32; r++ {
			for c := 0; c < 32; c++ {
				R, C := f.Row0+r, f.Col0+c
				if s.Cube[(r*32+c)*205+7] != cube.Data[(R*100+C)*205+7] || s.ClassIDs[r*32+c] != gt.IDs[R*100+C] {
					t.Fatalf("tile %d pixel (%d,%d) differs from scene (%d,%d)", f.ID, r, c, R, C)
				}
				anom += int(s.ClassIDs[r*32+c])
			}
		}
	}
	// The 96×96 tiled area holds the anomalies except those in the last 4 rows/columns.
	inArea := 0
	for R := 0; R < 96; R++ {
		for C := 0; C < 96; C++ {
			inArea += int(gt.IDs[R*100+C])
		}
	}
	if anom != inArea {
		t.Fatalf("tiles hold %d anomaly pixels, the tiled area %d", anom, inArea)
	}
}

func TestOpenSceneENVIWithPNG(t *testing.T) {
	dir := t.TempDir()
	// 6×9 cube to match testdata/png/gray8.png.
	c := &Cube{H: 6, W: 9, C: 2, Data: make([]float32, 6*9*2)}
	for i := range c.Data {
		c.Data[i] = float32(i)
	}
	if err := WriteENVI(filepath.Join(dir, "scene"), c, ENVIWriteOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := OpenScene(filepath.Join(dir, "scene.img"), SceneOptions{GroundTruth: "testdata/png/gray8.png", TileSize: 3, Wavelengths: []float32{700, 800}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Frames) != 6 || !d.WavelengthsKnown || d.Wavelengths[1] != 800 {
		t.Fatalf("%d tiles, wavelengths %v", len(d.Frames), d.Wavelengths)
	}
	png, _ := ReadPNGMask("testdata/png/gray8.png")
	s, _ := d.Load(5) // tile row 1, column 2
	if s.ClassIDs[4] != png.IDs[(3+1)*9+6+1] {
		t.Fatal("tile labels do not match the PNG")
	}
	_, err = OpenScene(filepath.Join(dir, "scene.img"), SceneOptions{GroundTruth: "testdata/png/gray16.png"})
	mustContain(t, err, "gray16.png", "ground truth is 5×7 but the cube is 6×9")
	_, err = OpenScene(filepath.Join(dir, "scene.img"), SceneOptions{TileSize: 10})
	mustContain(t, err, "tile size 10")
	_, err = OpenScene(filepath.Join(dir, "scene.img"), SceneOptions{TileSize: 3, Fractions: [3]float64{0.5, 0.5, 0.5}})
	mustContain(t, err, "add up to 1")
	_, err = OpenScene("testdata/mat/v73.mat", SceneOptions{})
	mustContain(t, err, "v7.3")
	_, err = OpenScene("x.cu3s", SceneOptions{})
	mustContain(t, err, "x.cu3s", "cuvis")
}
