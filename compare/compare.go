// Package compare trains several variants on the same data and seed and compares them:
// comparison.json, comparison.md (the tutorial's table) and plots (`spectraclip compare`).
package compare

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/trainer"

	"github.com/spectraclip/spectraclip/config"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/report"
)

// Options configure Run.
type Options struct {
	Out       string
	Variants  []string
	Overrides []string // applied to every variant (keys must exist in each)
	Environ   []string
	Log       *logrus.Logger
}

// Comparison is the outcome of Run.
type Comparison struct {
	Results  []*run.Result `json:"results"`
	Markdown string        `json:"-"`
}

// Run trains the variants on the same data and seed and writes comparison.json,
// comparison.md (the tutorial's table) and comparison plots.
func Run(o Options) (*Comparison, error) {
	if len(o.Variants) == 0 {
		o.Variants = config.VariantNames
	}
	if o.Out == "" {
		o.Out = filepath.Join("outputs", "compare", time.Now().Format("2006-01-02_15-04-05"))
	}
	if _, err := os.Stat(filepath.Join(o.Out, "comparison.json")); err == nil {
		return nil, fmt.Errorf("%s already holds a comparison; choose another --out", o.Out)
	}
	// Every variant's config is composed (and so every name and override checked) before
	// anything is trained or written.
	cfgs := make([]*config.Config, len(o.Variants))
	for i, v := range o.Variants {
		for _, w := range o.Variants[:i] {
			if w == v {
				return nil, fmt.Errorf("--variants: %s is listed twice", v)
			}
		}
		cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: v, Overrides: o.Overrides, Environ: o.Environ})
		if err != nil {
			return nil, fmt.Errorf("variant %s: %w", v, err)
		}
		cfgs[i] = cfg
	}
	made, err := run.MakeOutputDir(o.Out)
	if err != nil {
		return nil, fmt.Errorf("--out %s: %w", o.Out, err)
	}
	c := &Comparison{}
	var learned []bool // per result: a gradient-trained variant (loss nodes)
	for i, v := range o.Variants {
		if o.Log != nil {
			o.Log.WithField("variant", v).Info("training")
		}
		res, err := trainer.Train(cfgs[i], trainer.Options{OutDir: filepath.Join(o.Out, v), Log: o.Log, Progress: os.Stderr})
		if err != nil {
			if len(c.Results) == 0 { // a finished variant's run stays
				made.Undo()
			}
			return nil, fmt.Errorf("variant %s: %w", v, err)
		}
		c.Results = append(c.Results, res)
		learned = append(learned, len(cfgs[i].LossNodes) > 0)
	}
	var b strings.Builder
	b.WriteString("# Variant comparison\n\n")
	if len(c.Results) > 0 {
		r0 := c.Results[0]
		fmt.Fprintf(&b, "Detector: %s · device %s · %d threads · LibTorch %s · seed %d. Metrics are pooled over every pixel of the split; anomaly = stone for every variant.\n\n", r0.Detector, r0.Device, r0.Threads, r0.LibTorch, r0.Seed)
	}
	b.WriteString("| variant | val IoU | test IoU | precision | recall | F1 | AP | AUROC | train s | inference FPS | bands | checkpoint |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i, r := range c.Results {
		bands := ""
		for i, sb := range r.SelectedBands {
			if i > 0 {
				bands += ", "
			}
			bands += fmt.Sprintf("%.0f nm", sb.Wavelength)
		}
		f := config.FormatMetric
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %.2f | %s | %s |\n", RowLabel(r.Variant, learned[i], r.Trained),
			f(r.Val["iou"]), f(r.Test["iou"]), f(r.Test["precision"]), f(r.Test["recall"]), f(r.Test["f1_score"]), f(r.Test["average_precision"]), f(r.Test["auroc"]), r.TrainSeconds, r.InferenceFPS, bands, CheckpointLabel(r.CheckpointEpoch))
	}
	c.Markdown = b.String()
	series := map[string][]report.XY{}
	for i, r := range c.Results {
		for _, h := range r.History { // epoch 0: the initialisation
			l := RowLabel(r.Variant, learned[i], r.Trained)
			series[l] = append(series[l], report.XY{X: float64(h.Epoch), Y: h.Val["iou"]})
		}
	}
	md := c.Markdown
	if len(series) > 0 {
		if err := report.LinePlot(filepath.Join(o.Out, "val_iou.png"), "Validation IoU per epoch", "epoch", "IoU", series); err == nil {
			md += "\n![validation IoU](val_iou.png)\n"
		}
	}
	for i, r := range c.Results {
		md += fmt.Sprintf("\n- %s: run directory `%s`, report `%s/report.md`\n", RowLabel(r.Variant, learned[i], r.Trained), r.Dir, r.Dir)
	}
	js, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := nodes.WriteFileAtomic(filepath.Join(o.Out, "comparison.json"), js); err != nil {
		return nil, err
	}
	if err := nodes.WriteFileAtomic(filepath.Join(o.Out, "comparison.md"), []byte(md)); err != nil {
		return nil, err
	}
	return c, nil
}

// Untrained is the label of a learned variant's row when no gradient epoch ran (e.g.
// max_epochs 0, or a scene compared with split none): its result is its initialisation.
const Untrained = "(initialisation, untrained)"

// RowLabel names a result row: a learned variant (one with loss nodes) that was not
// trained is labelled Untrained, so it does not read as a result of the learned variant.
func RowLabel(name string, learned, trained bool) string {
	if learned && !trained {
		return name + " " + Untrained
	}
	return name
}

// CheckpointLabel describes the evaluated checkpoint's epoch for a comparison table.
func CheckpointLabel(epoch *int) string {
	switch {
	case epoch == nil:
		return "none"
	case *epoch == 0:
		return "epoch 0 (initialisation)"
	}
	return fmt.Sprintf("epoch %d", *epoch)
}
