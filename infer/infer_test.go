package infer

import (
	"encoding/json"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"github.com/spectraclip/spectraclip/report"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/torch"
)

// referenceScores runs the run's pipeline on one cube the plain way (a fresh tensor copied
// from the decoded cube, one frame at a time, nothing overlapped) and returns its scores.
func referenceScores(t *testing.T, r *run.Artefact, path string) []float32 {
	t.Helper()
	c, err := dataset.ReadENVI(path)
	if err != nil {
		t.Fatal(err)
	}
	s := torch.NewScope()
	defer s.Close()
	batch, err := datanode.ToBatch(s, &dataset.Batch{Cube: c.Data, B: 1, H: c.H, W: c.W, C: c.C, Wavelengths: c.Wavelengths, FrameIDs: []int{0}}, r.Device(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.SetGradEnabled(false)
	o, err := r.Pipeline.Run(&nodes.Context{Stage: nodes.StageInference, Scope: s, Device: r.Device()}, batch, nodes.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sn, sp := config.PortRef(r.Cfg.Evaluation.Scores)
	st, err := o.Tensor(sn, sp)
	if err != nil {
		t.Fatal(err)
	}
	v, err := st.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func readNPY32(t *testing.T, path string) ([]float32, []int) {
	t.Helper()
	a, err := dataset.ReadNPY(path)
	if err != nil {
		t.Fatal(err)
	}
	return a.Data, a.Shape
}

// The overlapped infer (frames decoded straight into two alternating input tensors, read
// ahead of the forward pass, maps written behind it) writes, for every frame of a folder whose
// frame size changes part-way, the same scores bit for bit as the pipeline run frame by frame
// the plain way, as (H, W) arrays; and it leaves no LibTorch tensor alive.
func TestInferMatchesPipelinePerFrame(t *testing.T) {
	dir := t.TempDir()
	runDir := trainTiny(t, dir, "drcnn", 1)
	in := filepath.Join(dir, "in")
	writeFrames(t, in, 3, 24, 20, 5)
	addFramesOfSize(t, in, filepath.Join(dir, "other"), 16, 28, 6, "frame_001b", "frame_003")
	live := torch.LiveTensors()
	out := filepath.Join(dir, "out")
	sum, err := Run(runDir, in, out, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := torch.LiveTensors() - live; d != 0 {
		t.Errorf("%d LibTorch tensors left alive by infer", d)
	}
	if sum.Frames != 5 {
		t.Fatalf("%d frames written, want 5", sum.Frames)
	}
	r, err := run.Open(runDir, run.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Pipeline.Close()
	hdrs, _ := filepath.Glob(filepath.Join(in, "*.hdr"))
	sort.Strings(hdrs)
	for _, h := range hdrs {
		name := strings.TrimSuffix(filepath.Base(h), ".hdr")
		want := referenceScores(t, r, h)
		got, shape := readNPY32(t, filepath.Join(out, name+"_scores.npy"))
		c, _ := dataset.ReadENVIHeader(h)
		if !slices.Equal(shape, []int{c.Lines, c.Samples}) {
			t.Errorf("%s: scores shape %v, want [%d %d]", name, shape, c.Lines, c.Samples)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: infer's scores differ from the pipeline run on the frame alone", name)
		}
	}
}

// --outputs selects the files: npy alone writes only arrays (no results.json), png,json writes
// the images and a results.json that names no array. The heat map is the Inferno map at 256
// levels: each pixel within 3 levels per channel of report.Heatmap's colour for the same
// scores, and the decisions image is red exactly where the decisions array is 1.
func TestInferOutputsSwitch(t *testing.T) {
	dir := t.TempDir()
	runDir := trainTiny(t, dir, "drcnn", 1)
	in := filepath.Join(dir, "in")
	writeFrames(t, in, 2, 20, 24, 9)
	list := func(d string) []string {
		ents, _ := os.ReadDir(d)
		var s []string
		for _, e := range ents {
			s = append(s, e.Name())
		}
		return s
	}
	npyOnly := filepath.Join(dir, "npy")
	if _, err := Run(runDir, in, npyOnly, Options{Outputs: Outputs{NPY: true}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range list(npyOnly) {
		if !strings.HasSuffix(f, ".npy") {
			t.Errorf("--outputs npy wrote %s", f)
		}
	}
	if len(list(npyOnly)) != 4 {
		t.Errorf("--outputs npy wrote %v, want two arrays per frame", list(npyOnly))
	}
	img := filepath.Join(dir, "img")
	if _, err := Run(runDir, in, img, Options{Outputs: Outputs{PNG: true, JSON: true}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range list(img) {
		if strings.HasSuffix(f, ".npy") {
			t.Errorf("--outputs png,json wrote %s", f)
		}
	}
	b, err := os.ReadFile(filepath.Join(img, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Frames []map[string]any `json:"frames"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Frames) != 2 || res.Frames[0]["heatmap_png"] != "frame_000_scores.png" {
		t.Fatalf("results.json frames %v", res.Frames)
	}
	if _, ok := res.Frames[0]["scores_npy"]; ok {
		t.Errorf("results.json names an array that was not written: %v", res.Frames[0])
	}
	scores, _ := readNPY32(t, filepath.Join(npyOnly, "frame_001_scores.npy"))
	dec, err := dataset.ReadNPY(filepath.Join(npyOnly, "frame_001_decisions.npy"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := report.Heatmap(scores, 20, 24)
	if err != nil {
		t.Fatal(err)
	}
	heat := decodePNG(t, filepath.Join(img, "frame_001_scores.png"))
	mask := decodePNG(t, filepath.Join(img, "frame_001_decisions.png"))
	for y := 0; y < 20; y++ {
		for x := 0; x < 24; x++ {
			r1, g1, b1, _ := heat.At(x, y).RGBA()
			r2, g2, b2, _ := want.At(x, y).RGBA()
			for _, d := range []int{int(r1>>8) - int(r2>>8), int(g1>>8) - int(g2>>8), int(b1>>8) - int(b2>>8)} {
				if d < -3 || d > 3 {
					t.Fatalf("heat map pixel (%d, %d) is %v, report.Heatmap's %v", x, y, heat.At(x, y), want.At(x, y))
				}
			}
			r, g, bb, _ := mask.At(x, y).RGBA()
			red := r>>8 == 255 && g == 0 && bb == 0
			black := r == 0 && g == 0 && bb == 0
			if d := dec.Data[y*24+x]; !(d == 1 && red || d == 0 && black) {
				t.Fatalf("decisions pixel (%d, %d) is %v for decision %v", x, y, mask.At(x, y), d)
			}
		}
	}
	if _, err := ParseOutputs("npy,tiff"); err == nil || !strings.Contains(err.Error(), "tiff") {
		t.Errorf("--outputs npy,tiff: %v", err)
	}
	if o, err := ParseOutputs(AllOutputs.String()); err != nil || o != AllOutputs {
		t.Errorf("the default --outputs %q reads as %+v, %v", AllOutputs.String(), o, err)
	}
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// --batch 3 over a folder whose frame size changes (batches of 3, 1 and 2 frames) writes the
// same maps as frame by frame: scores within 1e-5, every frame named once, in order.
func TestInferBatchMatchesSingleFrames(t *testing.T) {
	dir := t.TempDir()
	runDir := trainTiny(t, dir, "pca", 1)
	in := filepath.Join(dir, "in")
	writeFrames(t, in, 4, 20, 24, 3)
	addFramesOfSize(t, in, filepath.Join(dir, "other"), 16, 12, 4, "frame_009a", "frame_009b")
	// sizes in order: 20×24 four times, 16×12 twice → batches of 3, 1 and 2 frames
	one, three := filepath.Join(dir, "one"), filepath.Join(dir, "three")
	if _, err := Run(runDir, in, one, Options{}); err != nil {
		t.Fatal(err)
	}
	live := torch.LiveTensors()
	if _, err := Run(runDir, in, three, Options{Batch: 3}); err != nil {
		t.Fatal(err)
	}
	if d := torch.LiveTensors() - live; d != 0 {
		t.Errorf("%d LibTorch tensors left alive by a batched infer", d)
	}
	var r1, r3 struct {
		Frames []frameOut `json:"frames"`
	}
	for _, x := range []struct {
		dir string
		res any
	}{{one, &r1}, {three, &r3}} {
		b, err := os.ReadFile(filepath.Join(x.dir, "results.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, x.res); err != nil {
			t.Fatal(err)
		}
	}
	if len(r3.Frames) != 6 || len(r1.Frames) != 6 {
		t.Fatalf("%d and %d frames in results.json, want 6", len(r1.Frames), len(r3.Frames))
	}
	for i, f := range r3.Frames {
		if f.Name != r1.Frames[i].Name || f.Height != r1.Frames[i].Height {
			t.Fatalf("frame %d: batched %s %d×%d, single %s %d×%d", i, f.Name, f.Height, f.Width, r1.Frames[i].Name, r1.Frames[i].Height, r1.Frames[i].Width)
		}
		a, _ := readNPY32(t, filepath.Join(one, f.Name+"_scores.npy"))
		b, _ := readNPY32(t, filepath.Join(three, f.Name+"_scores.npy"))
		if len(a) != len(b) {
			t.Fatalf("%s: %d and %d scores", f.Name, len(a), len(b))
		}
		for j := range a {
			if d := a[j] - b[j]; d > 1e-5 || d < -1e-5 {
				t.Fatalf("%s: score %d is %v batched, %v alone", f.Name, j, b[j], a[j])
			}
		}
	}
}
