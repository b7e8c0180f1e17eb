package scene

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/scene/scenespec"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/internal/testpy"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/infer"
	"github.com/spectraclip/spectraclip/trainer"
)

// plant returns h×w labels with n square objects of sides 1..4 (1 px apart at least), and
// their sizes in the order placed.
func plant(h, w int, sides []int) []bool {
	a := make([]bool, h*w)
	r, c := 2, 2
	for _, s := range sides {
		if c+s >= w-1 {
			r, c = r+6, 2
		}
		for y := r; y < r+s; y++ {
			for x := c; x < c+s; x++ {
				a[y*w+x] = true
			}
		}
		c += s + 3
	}
	return a
}

func TestObjectsSplitPlantedObjects(t *testing.T) {
	const h, w = 64, 72
	sides := []int{4, 1, 3, 2, 4, 2, 1, 3, 2, 4, 1, 2}
	anom := plant(h, w, sides)
	spec := scenespec.Spec{Path: "planted", Split: "objects", Fractions: scenespec.DefaultFractions, Block: scenespec.DefaultBlock}
	ps, err := Split(anom, h, w, spec, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Components) != len(sides) {
		t.Fatalf("%d components, %d planted", len(ps.Components), len(sides))
	}
	var perSplit [3]int
	for i, c := range ps.Components {
		if c.Pixels != sides[i]*sides[i] {
			t.Fatalf("component %d has %d pixels, planted %d", i, c.Pixels, sides[i]*sides[i])
		}
		perSplit[c.Split]++
	}
	for s, n := range perSplit {
		if n == 0 {
			t.Fatalf("split %s has no object: %v", SplitNames[s], ps.Components)
		}
	}
	// every pixel in exactly one split; every object whole in its component's split
	var normal [3]int
	total := 0
	for p := range anom {
		k := -1
		for s := range 3 {
			if ps.Masks[s][p] {
				if k >= 0 {
					t.Fatalf("pixel %d in %s and %s", p, SplitNames[k], SplitNames[s])
				}
				k = s
			}
		}
		if k < 0 {
			t.Fatalf("pixel %d in no split", p)
		}
		if !anom[p] {
			normal[k]++
			total++
		}
	}
	lab, _ := components(anom, h, w)
	for p, c := range lab {
		if c >= 0 && !ps.Masks[ps.Components[c].Split][p] {
			t.Fatalf("object %d is cut: pixel %d is not in %s", c, p, SplitNames[ps.Components[c].Split])
		}
	}
	for s := range 3 {
		if f := float64(normal[s]) / float64(total); math.Abs(f-scenespec.DefaultFractions[s]) > 0.05 {
			t.Fatalf("normal pixels: %s share %.3f, want %.2f ± 0.05", SplitNames[s], f, scenespec.DefaultFractions[s])
		}
	}
	// the blocks: an 8×8 block of normal pixels lies in one split
	for r0 := 0; r0 < h; r0 += 8 {
		for c0 := 0; c0 < w; c0 += 8 {
			k := -1
			for y := r0; y < min(r0+8, h); y++ {
				for x := c0; x < min(c0+8, w); x++ {
					if anom[y*w+x] {
						continue
					}
					for s := range 3 {
						if ps.Masks[s][y*w+x] {
							if k >= 0 && k != s {
								t.Fatalf("block at %d,%d split over %s and %s", r0, c0, SplitNames[k], SplitNames[s])
							}
							k = s
						}
					}
				}
			}
		}
	}
	again, _ := Split(anom, h, w, spec, 3)
	other, _ := Split(anom, h, w, spec, 4)
	same, diff := true, false
	for s := range 3 {
		for p := range anom {
			same = same && again.Masks[s][p] == ps.Masks[s][p]
			diff = diff || other.Masks[s][p] != ps.Masks[s][p]
		}
	}
	if !same || !diff {
		t.Fatalf("seeded split: same seed same masks %v, another seed other masks %v", same, diff)
	}
}

func TestTooFewObjectsRefused(t *testing.T) {
	anom := plant(40, 40, []int{3, 2})
	_, err := Split(anom, 40, 40, scenespec.Spec{Path: "two.npz", Split: "objects", Fractions: scenespec.DefaultFractions, Block: 8}, 1)
	if err == nil {
		t.Fatal("a 3-way split of 2 objects was accepted")
	}
	for _, want := range []string{"two.npz", "has 2", "fewer splits", "--split none"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	ps, err := Split(anom, 40, 40, scenespec.Spec{Split: "objects", Fractions: [3]float64{0.5, 0, 0.5}, Block: 8}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !ps.ValIsTrain || count(ps.Masks[1]) != count(ps.Masks[0]) {
		t.Fatal("val share 0: validation is not on the train pixels")
	}
	if _, err := scenespec.Parse(map[string]any{"path": "x", "fractions": []any{0.5, 0.5, 0.0}}); err == nil {
		t.Fatal("a test share of 0 was accepted")
	}
	if _, err := scenespec.Parse(map[string]any{"path": "x", "splt": "none"}); err == nil || !strings.Contains(err.Error(), "data.scene.splt") {
		t.Fatalf("unknown key: %v", err)
	}
}

// A test split without anomaly pixels gives undefined AUROC, AP, IoU and F1: null in JSON,
// "undefined" in tables, never 0 or NaN.
func TestUndefinedMetrics(t *testing.T) {
	n := 50
	anom := make([]bool, n)
	scores := make([]float32, n)
	for i := range scores {
		scores[i] = float32(i)
	}
	ps, _ := Split(anom, 5, 10, scenespec.Spec{Split: "none"}, 1)
	m, err := Evaluate(scores, anom, ps)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]Value{"auroc": m.AUROC, "ap": m.AP, "iou": m.IoU, "f1": m.F1} {
		if v.Defined || v.String() != "undefined" {
			t.Fatalf("%s = %v with no anomaly pixel", k, v)
		}
	}
	b, _ := json.Marshal(m)
	if !strings.Contains(string(b), `"auroc":null`) || strings.Contains(string(b), "NaN") {
		t.Fatalf("json %s", b)
	}
	c := &Comparison{Seeds: []uint64{1}, Scenes: []SceneInfo{{Name: "s", Rule: "none"}}, Rows: []Row{{Scene: "s", Seed: 1, Row: "RX (global)", Test: m}}}
	c.summarise()
	md := c.markdown()
	if !strings.Contains(md, "| RX (global) | undefined | undefined | undefined | undefined |") || strings.Contains(md, "NaN") {
		t.Fatalf("markdown:\n%s", md)
	}
}

// genScene writes a generated scene with numpy (scene/testdata/gen_scene.py).
func genScene(t *testing.T, dir string, h, w, c, objects int, seed int) string {
	t.Helper()
	py := os.Getenv("PYTHON")
	if py == "" {
		py = testpy.Python()
	}
	out := filepath.Join(dir, fmt.Sprintf("g%d.npz", c))
	b, err := exec.Command(py, "testdata/gen_scene.py", out, fmt.Sprint(h), fmt.Sprint(w), fmt.Sprint(c), fmt.Sprint(objects), fmt.Sprint(seed)).CombinedOutput()
	if err != nil {
		t.Fatalf("gen_scene.py: %v\n%s", err, b)
	}
	return out
}

// Generated scenes of odd band counts with planted objects go through compare end to end:
// every node sized from the data, every row scored on the same test pixels (the learned rows'
// AUROC equals what their own run measured on its test pixels), the outputs written, and a
// saved pipeline refuses a cube of another band count, naming both counts.
func TestOddBandCountsCompare(t *testing.T) {
	dir := t.TempDir()
	for _, bands := range []int{7, 102, 205} {
		path := genScene(t, dir, 32, 32, bands, 8, bands)
		variants := []string{"pca", "drcnn", "concrete"}
		if bands == 102 {
			variants = []string{"drcnn"}
		}
		out := filepath.Join(dir, fmt.Sprintf("cmp%d", bands))
		c, err := Compare(CompareOptions{Out: out, Seeds: []uint64{1}, Variants: variants,
			Scenes:    []scenespec.Spec{{Path: path, CubeVar: "cube", GTVar: "gt", Split: "objects", Fractions: scenespec.DefaultFractions, Block: 8}},
			Overrides: []string{"training.trainer.max_epochs=2", "training.threads=1", "training.trainer.enable_progress_bar=false"}})
		if err != nil {
			t.Fatalf("%d bands: %v", bands, err)
		}
		if len(c.Rows) != 2+len(variants) {
			t.Fatalf("%d bands: %d rows", bands, len(c.Rows))
		}
		for _, r := range c.Rows {
			if !r.Test.AUROC.Defined || !r.Test.AP.Defined || !r.Test.IoU.Defined || r.Test.Anomalies == 0 {
				t.Fatalf("%d bands, %s: %+v", bands, r.Row, r.Test)
			}
			if r.RunDir != "" && math.Abs(r.Trainer.V-r.Test.AUROC.V) > 1e-6 {
				t.Fatalf("%d bands, %s: AUROC %v here, %v in its run: not the same test pixels", bands, r.Row, r.Test.AUROC, r.Trainer)
			}
			if r.Row == "Concrete" && !strings.HasPrefix(r.Bands, "band ") {
				t.Fatalf("bands of a scene without wavelengths: %q", r.Bands)
			}
		}
		for _, f := range []string{"comparison.json", "comparison.csv", "comparison.md"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Fatal(err)
			}
		}
		var drcnn string
		for _, r := range c.Rows {
			if r.Row == "DRCNN" {
				drcnn = r.RunDir
			}
		}
		y, err := os.ReadFile(filepath.Join(drcnn, "config.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(y), fmt.Sprintf("input_channels: %d", bands)) || !strings.Contains(string(y), fmt.Sprintf("- %d\n", bands)) {
			t.Fatalf("%d bands: config.yaml without input_channels %d:\n%s", bands, bands, y)
		}
		if bands == 7 {
			// a 9-band cube on the 7-band DRCNN run
			run := drcnn
			cube := &dataset.Cube{H: 8, W: 8, C: 9, Data: make([]float32, 8*8*9)}
			for i := range cube.Data {
				cube.Data[i] = float32(i%13) / 13
			}
			hdr := filepath.Join(dir, "nine")
			if err := dataset.WriteENVI(hdr, cube, dataset.ENVIWriteOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := infer.Infer(run, hdr+".hdr", filepath.Join(dir, "inf"), nil)
			if err == nil || !strings.Contains(err.Error(), "expected 7, got 9") {
				t.Fatalf("a 9-band cube on a 7-band pipeline: %v", err)
			}
			if testing.Verbose() {
				t.Logf("9-band cube on the 7-band run: %v", err)
			}
		}
	}
}

// The shipped real scene: RX on every pixel (split none) reproduces the published pixel AUROC
// 0.8221 of its README, and the zero-shot row is scored on the same pixels.
func TestRealSceneRX(t *testing.T) {
	path := "../../shared/data/real/abu-airport-1.mat"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("real scene %s not present (../shared/data/real/): %v", path, err)
	}
	c, err := Compare(CompareOptions{Out: t.TempDir(), Seeds: []uint64{1}, Variants: []string{"pca"},
		Scenes:    []scenespec.Spec{{Path: path, Split: "none"}},
		Overrides: []string{"training.threads=1", "training.trainer.enable_progress_bar=false"}})
	if err != nil {
		t.Fatal(err)
	}
	rx := c.Rows[0]
	if rx.Test.Pixels != 10000 || rx.Test.Anomalies != 144 || math.Abs(rx.Test.AUROC.V-0.8221) > 5e-4 {
		t.Fatalf("RX on abu-airport-1: %+v, want AUROC 0.8221 over 10000 pixels, 144 anomalies", rx.Test)
	}
	if z := c.Rows[2]; !z.Test.AUROC.Defined || z.Test.Pixels != 10000 {
		t.Fatalf("zero-shot row: %+v", z.Test)
	}
}

// A trainrun file with data.scene (no batch size, 61-channel pipeline of the shipped file)
// trains on a 7-band scene, and a reopened run (eval) measures the same test pixels.
func TestSceneTrainrunYAML(t *testing.T) {
	dir := t.TempDir()
	path := genScene(t, dir, 32, 32, 7, 8, 5)
	src, err := os.ReadFile("../configs/trainrun/drcnn_adaclip.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body := string(src)
	body = body[strings.Index(body, "pipeline:"):]
	y := fmt.Sprintf("defaults: [training/default]\nname: s\nvariant: drcnn\ndata:\n  scene: {path: %s, cube_var: cube, gt_var: gt}\n%s", path, body)
	file := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.LoadConfig(config.LoadOptions{File: file, Overrides: []string{"training.trainer.max_epochs=1", "training.threads=1", "training.trainer.enable_progress_bar=false"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := trainer.Train(cfg, trainer.Options{OutDir: filepath.Join(dir, "run"), Data: Source})
	if err != nil {
		t.Fatal(err)
	}
	m, err := trainer.EvalRun(res.Dir, "test", trainer.ReopenOptions{Data: Source})
	if err != nil {
		t.Fatal(err)
	}
	sc, err := OpenScene(scenespec.Spec{Path: path, CubeVar: "cube", GTVar: "gt", Split: "objects", Fractions: scenespec.DefaultFractions, Block: scenespec.DefaultBlock}, cfg.Training.Seed)
	if err != nil {
		t.Fatal(err)
	}
	scores, err := sceneScores(res.Dir, Lend(sc.Cube, sc.GT))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := Evaluate(scores, sc.Anom, sc.Split)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(m["auroc"]-res.Test["auroc"]) > 1e-9 || math.Abs(pm.AUROC.V-res.Test["auroc"]) > 1e-6 {
		t.Fatalf("test AUROC: run %v, eval %v, on the split's test pixels %v", res.Test["auroc"], m["auroc"], pm.AUROC)
	}
}

// A capture too large to run whole can be cut into tiles instead (split spatial or
// checkerboard): each tile is a frame of the run, the band count still comes from the data,
// and compare --scene, which scores whole-scene pixels, refuses a tiled split.
func TestTiledSceneTrainrun(t *testing.T) {
	dir := t.TempDir()
	path := genScene(t, dir, 64, 64, 7, 12, 9)
	src, err := os.ReadFile("../configs/trainrun/drcnn_adaclip.yaml")
	if err != nil {
		t.Fatal(err)
	}
	body := string(src)
	body = body[strings.Index(body, "pipeline:"):]
	y := fmt.Sprintf("defaults: [training/default]\nname: s\nvariant: drcnn\ndata:\n  scene: {path: %s, cube_var: cube, gt_var: gt, split: spatial, tile: 16}\n%s", path, body)
	file := filepath.Join(dir, "s.yaml")
	if err := os.WriteFile(file, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.LoadConfig(config.LoadOptions{File: file, Overrides: []string{"training.trainer.max_epochs=1", "training.threads=1",
		"training.trainer.enable_progress_bar=false", "+pipeline.detector.image_size=32"}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := trainer.Train(cfg, trainer.Options{OutDir: filepath.Join(dir, "run"), Data: Source})
	if err != nil {
		t.Fatal(err)
	}
	yb, err := os.ReadFile(filepath.Join(res.Dir, "config.yaml"))
	if err != nil || !strings.Contains(string(yb), "input_channels: 7") {
		t.Fatalf("config.yaml of the tiled run lacks input_channels: 7 (%v)", err)
	}
	if _, ok := res.Test["auroc"]; !ok {
		t.Fatalf("no test metrics: %v", res.Test)
	}
	m, err := trainer.EvalRun(res.Dir, "test", trainer.ReopenOptions{Data: Source})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := m["iou"], res.Test["iou"]; a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
		t.Errorf("eval of the reopened tiled run: iou %v, the run said %v", a, b)
	}
	sp, err := scenespec.Parse(map[string]any{"path": path, "cube_var": "cube", "gt_var": "gt", "split": "checkerboard"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Compare(CompareOptions{Out: filepath.Join(dir, "cmp"), Scenes: []scenespec.Spec{sp}}); err == nil || !strings.Contains(err.Error(), "tiled") {
		t.Errorf("compare with a tiled split: %v", err)
	}
	if _, err := scenespec.Parse(map[string]any{"path": path, "split": "spatial", "tile": 0}); err == nil || !strings.Contains(err.Error(), "tile") {
		t.Errorf("tile 0: %v", err)
	}
}

// The default split, auto, runs a scene whole up to MaxWholeScenePixels pixels and cuts a
// larger one into spatial tiles (checked here with the limit lowered below a 64×64 scene).
func TestAutoSplitTilesLargeScenes(t *testing.T) {
	dir := t.TempDir()
	path := genScene(t, dir, 64, 64, 7, 12, 11)
	open := func() (int, map[string][]bool) {
		cfg, err := scenespec.LoadConfig(scenespec.ConfigOptions{Variant: "drcnn", Spec: mustSpec(t, map[string]any{"path": path, "cube_var": "cube", "gt_var": "gt", "tile": 16})})
		if err != nil {
			t.Fatal(err)
		}
		ds, masks, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return len(ds.Frames), masks
	}
	if n, masks := open(); n != 1 || masks == nil {
		t.Errorf("a 64×64 scene under the limit: %d frames, pixel masks %v; want it whole (1 frame with masks)", n, masks != nil)
	}
	old := MaxWholeScenePixels
	MaxWholeScenePixels = 1000
	defer func() { MaxWholeScenePixels = old }()
	if n, masks := open(); n != 16 || masks != nil {
		t.Errorf("a 64×64 scene over a 1000-pixel limit: %d frames, pixel masks %v; want 16 tiles of 16×16 without masks", n, masks != nil)
	}
}

func mustSpec(t *testing.T, m map[string]any) scenespec.Spec {
	t.Helper()
	s, err := scenespec.Parse(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
