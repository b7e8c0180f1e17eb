package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func smallSynth() SynthConfig {
	cfg := DefaultSynthConfig()
	cfg.Frames, cfg.Height, cfg.Width = 4, 40, 52
	cfg.ValFrames, cfg.TestFrames, cfg.StoneFreeFrames = 1, 1, 1
	cfg.StoneRate = 0.1
	return cfg
}

func TestSynthDeterministic(t *testing.T) {
	dir := t.TempDir()
	cfg := smallSynth()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	for _, p := range []string{a, b} {
		if err := GenerateSynthetic(p, cfg); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Seed++
	if err := GenerateSynthetic(c, cfg); err != nil {
		t.Fatal(err)
	}
	files := []string{ManifestName, "annotations.json", "wavelengths.txt", "frames/frame_000.hdr", "frames/frame_000.img", "frames/frame_003.img"}
	for _, f := range files {
		fa, err := os.ReadFile(filepath.Join(a, f))
		if err != nil {
			t.Fatal(err)
		}
		fb, _ := os.ReadFile(filepath.Join(b, f))
		if !bytes.Equal(fa, fb) {
			t.Fatalf("%s differs between two runs with the same seed", f)
		}
		fc, _ := os.ReadFile(filepath.Join(c, f))
		if strings.HasSuffix(f, ".img") && bytes.Equal(fa, fc) {
			t.Fatalf("%s is the same for a different seed", f)
		}
	}
}

func TestSynthLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lentils")
	cfg := DefaultSynthConfig()
	if err := GenerateSynthetic(dir, cfg); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Frames) != 12 || d.Bands != 61 || !d.WavelengthsKnown {
		t.Fatalf("%d frames, %d bands, wavelengths known %v", len(d.Frames), d.Bands, d.WavelengthsKnown)
	}
	for b, w := range d.Wavelengths {
		if w != float32(430+8*b) {
			t.Fatalf("band %d at %v nm, want %d", b, w, 430+8*b)
		}
	}
	if !slices.Equal(d.Splits.Train, []int{0, 1, 2, 3, 4, 5, 6, 7}) || !slices.Equal(d.Splits.Val, []int{8, 9}) || !slices.Equal(d.Splits.Test, []int{10, 11}) {
		t.Fatalf("splits %+v", d.Splits)
	}
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.StoneFree) != 2 {
		t.Fatalf("stone-free frames %v, want 2", m.StoneFree)
	}
	for _, f := range d.Frames {
		s, err := d.Load(f.ID)
		if err != nil {
			t.Fatal(err)
		}
		var hist [5]int
		for _, v := range s.ClassIDs {
			hist[v]++
		}
		free := slices.Contains(m.StoneFree, f.ID)
		if free != (hist[ClassStone] == 0) {
			t.Fatalf("frame %d: %d stone pixels, stone-free %v", f.ID, hist[ClassStone], free)
		}
		if hist[ClassLentilsBlack] == 0 || hist[ClassLentilsBrown] == 0 || hist[ClassBackground] == 0 || hist[ClassUnlabeled] == 0 {
			t.Fatalf("frame %d: class histogram %v lacks a class", f.ID, hist)
		}
		for i, v := range s.Cube {
			if !(v >= 0 && v < 1.5) {
				t.Fatalf("frame %d: reflectance %v at %d", f.ID, v, i)
			}
		}
	}
	// The COCO file exercises polygons and both RLE forms, with categories 1..4.
	b, err := os.ReadFile(filepath.Join(dir, "annotations.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Images []struct {
			ID int `json:"id"`
		} `json:"images"`
		Annotations []struct {
			Seg json.RawMessage `json:"segmentation"`
		} `json:"annotations"`
		Categories []COCOCategory `json:"categories"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var poly, rleStr, rleList int
	for _, a := range raw.Annotations {
		switch {
		case a.Seg[0] == '[':
			poly++
		case bytes.Contains(a.Seg, []byte(`"counts":"`)):
			rleStr++
		default:
			rleList++
		}
	}
	if poly == 0 || rleStr == 0 || rleList == 0 {
		t.Fatalf("segmentations: %d polygons, %d RLE strings, %d RLE lists; want all forms", poly, rleStr, rleList)
	}
	names := []string{}
	for _, c := range raw.Categories {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{"Lentils_black", "Lentils_brown", "Stone", "Background"}) || raw.Categories[0].ID != 1 {
		t.Fatalf("categories %+v", raw.Categories)
	}
	for i, im := range raw.Images {
		if im.ID != i {
			t.Fatalf("image %d has id %d", i, im.ID)
		}
	}
}

// TestSynthStonesHideFromPCA checks the property the tutorial's comparison rests on: stones
// differ from lentils in a few NIR bands only, along a direction that carries little of the
// variance, so the top-3 principal components hardly separate them while 3 chosen bands do.
func TestSynthStonesHideFromPCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	cfg := DefaultSynthConfig()
	cfg.Frames, cfg.ValFrames, cfg.TestFrames, cfg.StoneFreeFrames = 4, 0, 0, 0
	if err := GenerateSynthetic(dir, cfg); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st := computeStoneStats(t, d)
	if st.stonePixels < 200 {
		t.Fatalf("only %d stone pixels", st.stonePixels)
	}
	best := 0
	for b := range st.fisher {
		if st.fisher[b] > st.fisher[best] {
			best = b
		}
	}
	// The best single band is in the NIR, and no visible band comes close.
	if st.wl[best] < 840 || st.wl[best] > 900 {
		t.Fatalf("best single band at %v nm (Fisher %.3f); want 840–900 nm", st.wl[best], st.fisher[best])
	}
	for b, f := range st.fisher {
		if st.wl[b] < 700 && f > 0.05*st.fisher[best] {
			t.Fatalf("visible band %v nm separates stones (Fisher %.3f vs best %.3f)", st.wl[b], f, st.fisher[best])
		}
	}
	// The stone-vs-lentil discriminant carries little variance: under 1% of the first principal
	// component's and under half of the third's.
	if st.ldaVar > 0.01*st.pcaVar[0] || st.ldaVar > 0.5*st.pcaVar[2] {
		t.Fatalf("variance along the stone direction %.3g vs principal variances %.3g", st.ldaVar, st.pcaVar[:3])
	}
	// Three task-chosen bands separate stones at least 20 times better than the top-3 PCs.
	if st.jBest3 < 20*st.jPCA3 {
		t.Fatalf("Fisher criterion: best 3 bands %.3g, top-3 PCA %.3g", st.jBest3, st.jPCA3)
	}
	hasDip := false
	for _, b := range st.best3 {
		hasDip = hasDip || (st.wl[b] >= 850 && st.wl[b] <= 895)
	}
	if !hasDip {
		t.Fatalf("best 3 bands %v do not include the 850–895 nm feature", st.best3)
	}
	t.Logf("best band %v nm (Fisher %.2f); PCA variances %.3g; stone-direction variance %.3g; J(best 3 bands %v,%v,%v nm) = %.3g vs J(PCA-3) = %.3g",
		st.wl[best], st.fisher[best], st.pcaVar[:3], st.ldaVar, st.wl[st.best3[0]], st.wl[st.best3[1]], st.wl[st.best3[2]], st.jBest3, st.jPCA3)
}

func TestGenerateSyntheticRefusesAndValidates(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("user data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := GenerateSynthetic(dir, smallSynth()); !errors.Is(err, ErrDatasetExists) {
		t.Fatalf("got %v, want ErrDatasetExists", err)
	}
	bad := []struct {
		mut  func(*SynthConfig)
		want string
	}{
		{func(c *SynthConfig) { c.Frames = 0 }, "frames = 0"},
		{func(c *SynthConfig) { c.Height = 10 }, "too small"},
		{func(c *SynthConfig) { c.StoneRate = 2 }, "stone_rate"},
		{func(c *SynthConfig) { c.ValFrames = 3 }, "leave no training frame"},
		{func(c *SynthConfig) { c.Interleave = "xyz" }, "interleave"},
		{func(c *SynthConfig) { c.StoneFreeFrames = 5 }, "stone_free_frames"},
	}
	for _, tc := range bad {
		cfg := smallSynth()
		tc.mut(&cfg)
		mustContain(t, GenerateSynthetic(filepath.Join(dir, "x"), cfg), tc.want)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("failed generations left %d entries", len(ents))
	}
}

func TestEnsureSynthetic(t *testing.T) {
	root := filepath.Join(t.TempDir(), "data", "lentils")
	cfg := smallSynth()
	if err := EnsureSynthetic(root, cfg); err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(filepath.Join(root, "frames", "frame_000.img"))
	if err != nil {
		t.Fatal(err)
	}
	// A second call leaves the complete set alone, even with another config.
	cfg.Seed = 99
	if err := EnsureSynthetic(root, cfg); err != nil {
		t.Fatal(err)
	}
	st2, _ := os.Stat(filepath.Join(root, "frames", "frame_000.img"))
	if !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatal("EnsureSynthetic rewrote an existing dataset")
	}
	// An interrupted set (no dataset.yaml) is neither opened nor overwritten.
	partial := filepath.Join(t.TempDir(), "partial")
	if err := os.MkdirAll(filepath.Join(partial, "frames"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Open(partial)
	mustContain(t, err, "no dataset.yaml")
	mustContain(t, EnsureSynthetic(partial, cfg), "has no dataset.yaml", partial)
	// A manifest whose frames are gone is reported, not regenerated.
	if err := os.Remove(filepath.Join(root, "frames", "frame_002.img")); err != nil {
		t.Fatal(err)
	}
	mustContain(t, EnsureSynthetic(root, cfg), "incomplete", "frame 2")
	// An empty directory is filled.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := EnsureSynthetic(empty, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(empty); err != nil {
		t.Fatal(err)
	}
}
