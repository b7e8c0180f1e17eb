package scene

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spectraclip/spectraclip/scene/scenespec"

	"github.com/sirupsen/logrus"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/spectraclip/spectraclip/compare"
	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/nodes/detect"
	"github.com/spectraclip/spectraclip/trainer"
)

// CompareOptions configure Compare.
type CompareOptions struct {
	Out       string
	Scenes    []scenespec.Spec // one table per scene
	Variants  []string         // shipped variants to train (default pca, drcnn, concrete)
	Seeds     []uint64         // default training.seed of the variant configs (42)
	Overrides []string         // after the scene defaults, for every variant
	Environ   []string
	Log       *logrus.Logger
	Progress  io.Writer
}

// Row is one detector on one scene and seed.
type Row struct {
	Scene   string       `json:"scene"`
	Seed    uint64       `json:"seed"`
	Row     string       `json:"row"`
	Test    PixelMetrics `json:"test"`
	TrainS  float64      `json:"train_seconds"`
	Bands   string       `json:"bands,omitempty"`
	RunDir  string       `json:"run_dir,omitempty"`
	Trainer Value        `json:"trainer_test_auroc"` // the run's own test AUROC (the same pixels), as a check
	// Trained is set on a learned variant's row: false when no gradient epoch ran (split
	// none), the row then being its initialisation (and labelled so).
	Trained *bool `json:"trained,omitempty"`
	// CheckpointEpoch is the epoch of the checkpoint a learned variant's row evaluates (0: the
	// initialisation was best on validation).
	CheckpointEpoch *int `json:"checkpoint_epoch,omitempty"`
}

// Summary is a row's mean and spread over seeds on one scene (Scene "mean": over scenes).
type Summary struct {
	Scene string            `json:"scene"`
	Row   string            `json:"row"`
	Mean  map[string]Value  `json:"mean"`
	Std   map[string]Value  `json:"std"`
	N     map[string]int    `json:"n"` // how many seeds had the metric defined
	Extra map[string]string `json:"extra,omitempty"`
}

// SceneInfo describes a compared scene.
type SceneInfo struct {
	Name       string      `json:"name"`
	Path       string      `json:"path"`
	H          int         `json:"height"`
	W          int         `json:"width"`
	Bands      int         `json:"bands"`
	Components []Component `json:"components"` // of the first seed's split
	Rule       string      `json:"split"`
	TestPixels int         `json:"test_pixels"`
}

// Comparison is what comparison.json holds.
type Comparison struct {
	Scenes   []SceneInfo `json:"scenes"`
	Seeds    []uint64    `json:"seeds"`
	Rows     []Row       `json:"rows"`
	Summary  []Summary   `json:"summary"`
	Markdown string      `json:"-"`
}

var metricKeys = []string{"auroc", "average_precision", "iou", "f1_score", "train_seconds"}

func (r Row) metric(k string) Value {
	switch k {
	case "auroc":
		return r.Test.AUROC
	case "average_precision":
		return r.Test.AP
	case "iou":
		return r.Test.IoU
	case "f1_score":
		return r.Test.F1
	case "train_seconds":
		return Def(r.TrainS)
	}
	return Undefined
}

// RowNames are the rows of a scene table in order; variants map to their rows.
var rowOf = map[string]string{"pca": "zero-shot (PCA + detector)", "drcnn": "DRCNN", "concrete": "Concrete"}

// Compare runs, for every scene and seed, global RX and the variants on the same pixel split
// and scores all on the same test pixels, writing comparison.json, comparison.csv,
// comparison.md and comparison.png under o.Out.
func Compare(o CompareOptions) (*Comparison, error) {
	if len(o.Scenes) == 0 {
		return nil, fmt.Errorf("compare: no --scene given")
	}
	for _, sp := range o.Scenes {
		if sp.Tiled() {
			return nil, fmt.Errorf("compare --scene %s: the comparison scores every row on held-out pixels of the whole scene; use --split objects (or none), not the tiled %s", sp.Path, sp.Split)
		}
	}
	if len(o.Variants) == 0 {
		o.Variants = config.VariantNames
	}
	for _, v := range o.Variants {
		if _, ok := rowOf[v]; !ok {
			return nil, fmt.Errorf("compare --scene: unknown variant %q (allowed: %s)", v, strings.Join(config.VariantNames, ", "))
		}
	}
	if len(o.Seeds) == 0 {
		o.Seeds = []uint64{42}
	}
	log := o.Log
	if log == nil {
		log = logrus.New()
		log.SetOutput(io.Discard)
	}
	if o.Out == "" {
		o.Out = filepath.Join("outputs", "compare", time.Now().Format("2006-01-02_15-04-05"))
	}
	if _, err := os.Stat(filepath.Join(o.Out, "comparison.json")); err == nil {
		return nil, fmt.Errorf("%s already holds a comparison; choose another --out", o.Out)
	}
	c := &Comparison{Seeds: o.Seeds}
	names := map[string]int{}
	for _, sp := range o.Scenes {
		name := strings.TrimSuffix(filepath.Base(sp.Path), filepath.Ext(sp.Path))
		if names[name]++; names[name] > 1 {
			name = fmt.Sprintf("%s-%d", name, names[name])
		}
		// One load of the scene for every seed and row: RX reads it, and the runs of the
		// variants borrow it (Lend) instead of each loading a cube of their own. The NaN
		// policy is applied here, once, so that every row sees the same values.
		cube, gt, err := Load(sp)
		if err != nil {
			return nil, err
		}
		if _, err := dataset.WholeScene(sp.Path, cube, gt, dataset.NaNPolicy(sp.NaNPolicy)); err != nil {
			return nil, err
		}
		lend := Lend(cube, gt)
		for si, seed := range o.Seeds {
			sc, err := splitScene(sp, seed, cube, gt)
			if err != nil {
				return nil, err
			}
			if si == 0 {
				c.Scenes = append(c.Scenes, SceneInfo{Name: name, Path: sp.Path, H: sc.Cube.H, W: sc.Cube.W, Bands: sc.Cube.C,
					Components: sc.Split.Components, Rule: sp.Split, TestPixels: count(sc.Split.Masks[2])})
				if err := os.MkdirAll(o.Out, 0o755); err != nil {
					return nil, err
				}
			}
			t0 := time.Now()
			rx, err := detect.RX(sc.Cube.Data, sc.Cube.H, sc.Cube.W, sc.Cube.C)
			if err != nil {
				return nil, fmt.Errorf("%s: rx: %w", sp.Path, err)
			}
			sec := time.Since(t0).Seconds()
			rx32 := make([]float32, len(rx))
			for i, v := range rx {
				rx32[i] = float32(v)
			}
			rx = nil // float64 scores of every pixel: not needed past here
			m, err := Evaluate(rx32, sc.Anom, sc.Split)
			if err != nil {
				return nil, fmt.Errorf("%s: rx: %w", sp.Path, err)
			}
			c.Rows = append(c.Rows, Row{Scene: name, Seed: seed, Row: "RX (global)", Test: m, TrainS: sec, Bands: fmt.Sprintf("all %d", sc.Cube.C), Trainer: Undefined})
			log.WithFields(logrus.Fields{"scene": name, "seed": seed, "row": "rx", "test_auroc": m.AUROC.String()}).Info("scored")
			t0 = time.Now()
			lrx, err := detect.LocalRX(sc.Cube.Data, sc.Cube.H, sc.Cube.W, sc.Cube.C, detect.LocalRXOptions{})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", sp.Path, err)
			}
			sec = time.Since(t0).Seconds()
			for i, v := range lrx {
				rx32[i] = float32(v)
			}
			if m, err = Evaluate(rx32, sc.Anom, sc.Split); err != nil {
				return nil, fmt.Errorf("%s: local rx: %w", sp.Path, err)
			}
			c.Rows = append(c.Rows, Row{Scene: name, Seed: seed, Row: "local RX (15×15, guard 5×5, 10 PCs)", Test: m, TrainS: sec, Bands: fmt.Sprintf("%d PCs of %d", min(10, sc.Cube.C), sc.Cube.C), Trainer: Undefined})
			for _, v := range o.Variants {
				row, err := runVariant(o, sp, sc, lend, name, v, seed, log)
				if err != nil {
					return nil, fmt.Errorf("%s, variant %s, seed %d: %w", sp.Path, v, seed, err)
				}
				c.Rows = append(c.Rows, row)
			}
		}
	}
	c.summarise()
	c.Markdown = c.markdown()
	if err := c.write(o.Out); err != nil {
		return nil, err
	}
	return c, nil
}

func count(m []bool) int {
	n := 0
	for _, b := range m {
		if b {
			n++
		}
	}
	return n
}

func runVariant(o CompareOptions, sp scenespec.Spec, sc *Scene, lend trainer.DataSource, name, v string, seed uint64, log *logrus.Logger) (Row, error) {
	ov := append([]string{"training.seed=" + strconv.FormatUint(seed, 10)}, o.Overrides...)
	if sp.Split == "none" {
		ov = append(ov, "training.trainer.max_epochs=0")
	}
	cfg, err := scenespec.LoadConfig(scenespec.ConfigOptions{Variant: v, Overrides: ov, Environ: o.Environ, Spec: sp})
	if err != nil {
		return Row{}, err
	}
	dir := filepath.Join(o.Out, name, fmt.Sprintf("seed-%d", seed), v)
	log.WithFields(logrus.Fields{"scene": name, "seed": seed, "variant": v}).Info("training")
	res, err := trainer.Train(cfg, trainer.Options{OutDir: dir, Log: log, Progress: o.Progress, Data: lend})
	if err != nil {
		return Row{}, err
	}
	scores, err := sceneScores(res.Dir, lend)
	if err != nil {
		return Row{}, err
	}
	m, err := Evaluate(scores, sc.Anom, sc.Split)
	if err != nil {
		return Row{}, err
	}
	row := Row{Scene: name, Seed: seed, Row: rowOf[v], Test: m, TrainS: res.TrainSeconds, RunDir: res.Dir, Trainer: Def(res.Test["auroc"]), CheckpointEpoch: res.CheckpointEpoch}
	if learned := len(cfg.LossNodes) > 0; learned {
		trained := res.Trained
		row.Trained = &trained
		row.Row = compare.RowLabel(row.Row, learned, trained)
	}
	var bands []string
	for _, b := range res.SelectedBands {
		if sc.Cube.Wavelengths != nil {
			bands = append(bands, fmt.Sprintf("%d (%.0f nm)", b.Band, b.Wavelength))
		} else {
			bands = append(bands, fmt.Sprintf("band %d", b.Band))
		}
	}
	row.Bands = strings.Join(bands, ", ")
	if row.Bands == "" {
		row.Bands = fmt.Sprintf("all %d", sc.Cube.C)
	}
	log.WithFields(logrus.Fields{"scene": name, "seed": seed, "row": v, "test_auroc": m.AUROC.String()}).Info("scored")
	return row, nil
}

// sceneScores reopens a finished whole-scene run on the lent scene and returns its score map
// of the scene.
func sceneScores(dir string, lend trainer.DataSource) ([]float32, error) {
	e, err := trainer.Reopen(dir, trainer.ReopenOptions{Data: lend})
	if err != nil {
		return nil, err
	}
	defer e.Close()
	ev, err := e.Evaluate("test", nodes.StageTest, 1)
	if err != nil {
		return nil, err
	}
	if len(ev.Samples) != 1 {
		return nil, fmt.Errorf("run %s: no score map of the scene", dir)
	}
	return ev.Samples[0].Scores, nil
}

func meanStd(vs []float64) (Value, Value) {
	if len(vs) == 0 {
		return Undefined, Undefined
	}
	var s float64
	for _, v := range vs {
		s += v
	}
	mean := s / float64(len(vs))
	if len(vs) < 2 {
		return Def(mean), Undefined
	}
	var ss float64
	for _, v := range vs {
		ss += (v - mean) * (v - mean)
	}
	return Def(mean), Def(math.Sqrt(ss / float64(len(vs)-1)))
}

// summarise computes per scene and row the mean and sample std over seeds of every metric
// that is defined, and a "mean" scene: the mean over scenes of the per-scene means.
func (c *Comparison) summarise() {
	var order []string
	seen := map[string]bool{}
	for _, r := range c.Rows {
		if !seen[r.Row] {
			seen[r.Row] = true
			order = append(order, r.Row)
		}
	}
	for _, s := range c.Scenes {
		for _, row := range order {
			sm := Summary{Scene: s.Name, Row: row, Mean: map[string]Value{}, Std: map[string]Value{}, N: map[string]int{}}
			for _, k := range metricKeys {
				var vs []float64
				for _, r := range c.Rows {
					if r.Scene == s.Name && r.Row == row {
						if v := r.metric(k); v.Defined {
							vs = append(vs, v.V)
						}
					}
				}
				sm.Mean[k], sm.Std[k] = meanStd(vs)
				sm.N[k] = len(vs)
			}
			c.Summary = append(c.Summary, sm)
		}
	}
	if len(c.Scenes) < 2 {
		return
	}
	for _, row := range order {
		sm := Summary{Scene: "mean", Row: row, Mean: map[string]Value{}, Std: map[string]Value{}, N: map[string]int{}}
		for _, k := range metricKeys {
			var vs []float64
			for _, s := range c.Summary {
				if s.Scene != "mean" && s.Row == row && s.Mean[k].Defined {
					vs = append(vs, s.Mean[k].V)
				}
			}
			sm.Mean[k], sm.Std[k] = meanStd(vs)
			sm.N[k] = len(vs)
		}
		c.Summary = append(c.Summary, sm)
	}
}

func cellMS(m, s Value) string {
	if !m.Defined {
		return "undefined"
	}
	if !s.Defined {
		return m.String()
	}
	return fmt.Sprintf("%.4f ± %.4f", m.V, s.V)
}

func (c *Comparison) markdown() string {
	var b strings.Builder
	b.WriteString("# Scene comparison\n\n")
	fmt.Fprintf(&b, "Seeds %v. Every row is scored on the same test pixels of each scene (pixel split `%s`); the decision threshold for IoU and F1 is the F1-best on the validation pixels (split none: the 0.99 quantile of the scene's scores, no labels). Whole-scene evaluation is transductive: every detector sees the spectra of all pixels (as RX does), the labels of val/test pixels are never used in training. Cells are mean ± sample std over seeds; \"undefined\" = the metric has no value (e.g. no anomaly pixel in the test split).\n\n", c.Seeds, c.Scenes[0].Rule)
	bands := map[string]string{}
	epochs := map[string][]string{} // the checkpoint epoch of every seed, in seed order
	for _, r := range c.Rows {
		if r.Seed == c.Seeds[0] {
			bands[r.Scene+"/"+r.Row] = r.Bands
		}
		if r.CheckpointEpoch != nil {
			epochs[r.Scene+"/"+r.Row] = append(epochs[r.Scene+"/"+r.Row], strconv.Itoa(*r.CheckpointEpoch))
		}
	}
	table := func(scene string) {
		b.WriteString("| row | test AUROC | test AP | test IoU | test F1 | train s | bands (first seed) | checkpoint epoch per seed (0 = initialisation) |\n|---|---|---|---|---|---|---|---|\n")
		for _, s := range c.Summary {
			if s.Scene != scene {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", s.Row, cellMS(s.Mean["auroc"], s.Std["auroc"]), cellMS(s.Mean["average_precision"], s.Std["average_precision"]),
				cellMS(s.Mean["iou"], s.Std["iou"]), cellMS(s.Mean["f1_score"], s.Std["f1_score"]), cellMS(s.Mean["train_seconds"], Undefined), bands[scene+"/"+s.Row], strings.Join(epochs[scene+"/"+s.Row], ", "))
		}
		b.WriteString("\n")
	}
	for _, s := range c.Scenes {
		comp := make([]string, len(s.Components))
		for i, k := range s.Components {
			where := "all"
			if k.Split >= 0 {
				where = SplitNames[k.Split]
			}
			comp[i] = fmt.Sprintf("%d px→%s", k.Pixels, where)
		}
		fmt.Fprintf(&b, "## %s\n\n`%s`: %d×%d pixels, %d bands; %d anomaly objects (first seed: %s); %d test pixels.\n\n", s.Name, s.Path, s.H, s.W, s.Bands, len(s.Components), strings.Join(comp, ", "), s.TestPixels)
		table(s.Name)
	}
	if len(c.Scenes) > 1 {
		b.WriteString("## Mean over scenes\n\n")
		table("mean")
	}
	return b.String()
}

func (c *Comparison) write(out string) error {
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	var cb strings.Builder
	w := csv.NewWriter(&cb)
	_ = w.Write([]string{"scene", "seed", "row", "test_auroc", "test_average_precision", "test_iou", "test_f1", "threshold", "test_pixels", "test_anomaly_pixels", "train_seconds", "bands", "run_dir", "trained", "checkpoint_epoch"})
	for _, r := range c.Rows {
		trained, epoch := "", "" // empty: not a learned variant / no checkpoint
		if r.Trained != nil {
			trained = strconv.FormatBool(*r.Trained)
		}
		if r.CheckpointEpoch != nil {
			epoch = strconv.Itoa(*r.CheckpointEpoch)
		}
		_ = w.Write([]string{r.Scene, strconv.FormatUint(r.Seed, 10), r.Row, r.Test.AUROC.String(), r.Test.AP.String(), r.Test.IoU.String(), r.Test.F1.String(),
			r.Test.Threshold.String(), strconv.Itoa(r.Test.Pixels), strconv.Itoa(r.Test.Anomalies), fmt.Sprintf("%.2f", r.TrainS), r.Bands, r.RunDir, trained, epoch})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	md := c.Markdown
	if err := c.barPlot(filepath.Join(out, "comparison.png")); err == nil {
		md += "![test AUROC per row](comparison.png)\n"
	}
	for name, data := range map[string][]byte{"comparison.json": js, "comparison.csv": []byte(cb.String()), "comparison.md": []byte(md)} {
		if err := nodes.WriteFileAtomic(filepath.Join(out, name), data); err != nil {
			return err
		}
	}
	return nil
}

// barPlot draws the mean test AUROC of every row, one group per scene.
func (c *Comparison) barPlot(path string) error {
	p := plot.New()
	p.Title.Text = "Test pixel AUROC (mean over seeds)"
	p.Y.Label.Text = "AUROC"
	var rows []string
	seen := map[string]bool{}
	for _, s := range c.Summary {
		if !seen[s.Row] {
			seen[s.Row] = true
			rows = append(rows, s.Row)
		}
	}
	var scenes []string
	for _, s := range c.Scenes {
		scenes = append(scenes, s.Name)
	}
	wd := vg.Points(14)
	for i, row := range rows {
		vals := make(plotter.Values, len(scenes))
		for j, sc := range scenes {
			for _, s := range c.Summary {
				if s.Scene == sc && s.Row == row && s.Mean["auroc"].Defined {
					vals[j] = s.Mean["auroc"].V
				}
			}
		}
		bc, err := plotter.NewBarChart(vals, wd)
		if err != nil {
			return err
		}
		bc.Color = plotutil.Color(i)
		bc.Offset = vg.Length(i-len(rows)/2) * wd
		p.Add(bc)
		p.Legend.Add(row, bc)
	}
	p.Legend.Top = true
	p.NominalX(scenes...)
	return p.Save(vg.Points(float64(120+len(scenes)*len(rows)*18)), vg.Points(260), path)
}
