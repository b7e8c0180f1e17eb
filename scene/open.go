package scene

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spectraclip/spectraclip/scene/scenespec"

	"github.com/sirupsen/logrus"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/trainer"
)

// Scene is a loaded scene with its pixel split.
type Scene struct {
	Spec  scenespec.Spec
	Cube  *dataset.Cube
	GT    *dataset.LabelImage
	Anom  []bool // ground truth: any non-zero label is an anomaly
	Split *PixelSplit
}

// OpenScene loads spec's scene and splits its pixels with seed (spec.Seed wins when set).
func OpenScene(spec scenespec.Spec, seed uint64) (*Scene, error) {
	cube, gt, err := Load(spec)
	if err != nil {
		return nil, err
	}
	return splitScene(spec, seed, cube, gt)
}

// splitScene splits the pixels of a loaded scene with seed (spec.Seed wins when set).
func splitScene(spec scenespec.Spec, seed uint64, cube *dataset.Cube, gt *dataset.LabelImage) (*Scene, error) {
	if spec.Seed != nil {
		seed = uint64(*spec.Seed)
	}
	anom := make([]bool, len(gt.IDs))
	for i, v := range gt.IDs {
		anom[i] = v != 0
	}
	ps, err := Split(anom, cube.H, cube.W, spec, seed)
	if err != nil {
		return nil, err
	}
	return &Scene{Spec: spec, Cube: cube, GT: gt, Anom: anom, Split: ps}, nil
}

// Source is the trainer's data source (trainer.DataSource) for any trainrun: data.scene
// opened by Open, otherwise data.root (trainer.OpenRoot).
func Source(cfg *config.Config, log *logrus.Logger) (*dataset.Dataset, map[string][]bool, error) {
	if cfg.Data.Scene == nil {
		ds, err := trainer.OpenRoot(cfg, log)
		return ds, nil, err
	}
	return Open(cfg)
}

// Open opens the scene of cfg.Data.Scene as a one-frame dataset and the pixel masks of its
// splits. It adapts cfg to the scene (Adapt): the band count of every node that depends on
// it, the pixel masks on the loss and the metrics.
func Open(cfg *config.Config) (*dataset.Dataset, map[string][]bool, error) {
	spec, err := scenespec.Parse(cfg.Data.Scene)
	if err != nil {
		return nil, nil, err
	}
	cube, gt, err := Load(spec)
	if err != nil {
		return nil, nil, err
	}
	return openLoaded(cfg, spec, cube, gt)
}

// Lend returns a data source (trainer.DataSource) that opens data.scene on cube and gt, a
// scene loaded already (Load) from the same file, instead of loading it again: the runs that
// compare starts share one cube. The runs read the cube and do not change it (the NaN policy,
// applied by every run, finds nothing left to change after the first). A trainrun without
// data.scene opens data.root.
func Lend(cube *dataset.Cube, gt *dataset.LabelImage) trainer.DataSource {
	return func(cfg *config.Config, log *logrus.Logger) (*dataset.Dataset, map[string][]bool, error) {
		if cfg.Data.Scene == nil {
			ds, err := trainer.OpenRoot(cfg, log)
			return ds, nil, err
		}
		spec, err := scenespec.Parse(cfg.Data.Scene)
		if err != nil {
			return nil, nil, err
		}
		return openLoaded(cfg, spec, cube, gt)
	}
}

// openLoaded is Open on a loaded scene.
func openLoaded(cfg *config.Config, spec scenespec.Spec, cube *dataset.Cube, gt *dataset.LabelImage) (*dataset.Dataset, map[string][]bool, error) {
	if spec.Split == "auto" {
		spec.Split = "objects"
		if n := cube.H * cube.W; n > MaxWholeScenePixels {
			spec.Split = "spatial"
			logrus.WithField("scene", spec.Path).Warnf("%d×%d pixels is more than the %d the whole-scene split runs: cutting it into %d×%d spatial tiles (set data.scene.split to choose)", cube.H, cube.W, MaxWholeScenePixels, spec.Tile, spec.Tile)
		}
	}
	if spec.Tiled() {
		return openTiled(cfg, spec, cube, gt)
	}
	sc, err := splitScene(spec, cfg.Training.Seed, cube, gt)
	if err != nil {
		return nil, nil, err
	}
	if spec.Split == "none" && len(cfg.LossNodes) > 0 && cfg.Training.Trainer.MaxEpochs > 0 {
		return nil, nil, fmt.Errorf("data.scene.split none puts every pixel in every split: zero-shot evaluation only; a gradient-trained variant (%s, loss_nodes %v) needs the objects split, or training.trainer.max_epochs=0", cfg.Name, cfg.LossNodes)
	}
	ds, err := dataset.WholeScene(spec.Path, sc.Cube, sc.GT, dataset.NaNPolicy(spec.NaNPolicy))
	if err != nil {
		return nil, nil, err
	}
	if err := Adapt(cfg, sc.Cube.C); err != nil {
		return nil, nil, err
	}
	return ds, sc.Split.Map(), nil
}

// openTiled cuts a loaded capture into tiles assigned to splits by a tiled rule (for captures too
// large to run whole): every tile is a frame, its labels are its own pixels', and the loss
// and metrics see whole tiles, so no pixel masks are needed.
func openTiled(cfg *config.Config, spec scenespec.Spec, cube *dataset.Cube, gt *dataset.LabelImage) (*dataset.Dataset, map[string][]bool, error) {
	ds, err := dataset.TileScene(spec.Path, cube, gt, dataset.SceneOptions{TileSize: spec.Tile, SplitRule: spec.Split, Fractions: spec.Fractions, NaNPolicy: dataset.NaNPolicy(spec.NaNPolicy)})
	if err != nil {
		return nil, nil, err
	}
	if _, err := adaptBands(cfg, ds.Bands); err != nil {
		return nil, nil, err
	}
	if cfg.Data.BatchSize < 1 {
		cfg.Data.BatchSize = 4
	}
	return ds, nil, nil
}

const dataNodeType = "LentilsAnomalyDataNode"

// Adapt makes a trainrun fit a whole scene of the given band count: input_channels and the
// first entry of reduction_scheme become bands; the data node maps 0 to normal and every
// other label to anomaly when it still has the Lentils mapping; the pixel masks (data node
// port valid) restrict every IoULoss and AnomalyMetrics node; one frame per batch. A pixel
// loss that cannot be restricted, or no AnomalyMetrics metrics node, is an error. Adapt is
// idempotent (a reopened run adapts its saved config again).
func Adapt(cfg *config.Config, bands int) error {
	dn, err := adaptBands(cfg, bands)
	if err != nil {
		return err
	}
	return adaptMasks(cfg, dn)
}

// adaptBands sets the band count of every node that depends on it and the scene's label
// mapping (0 normal, anything else anomalous) on the data node, whose name it returns.
func adaptBands(cfg *config.Config, bands int) (string, error) {
	dn := ""
	for _, name := range slices.Sorted(maps.Keys(cfg.Pipeline)) {
		spec := cfg.Pipeline[name]
		typ, _ := spec["type"].(string)
		if typ == dataNodeType {
			dn = name
			if isLentilsMapping(spec) {
				spec["normal_class_ids"] = []any{0}
				delete(spec, "anomaly_class_ids")
			}
		}
		if _, ok := spec["input_channels"]; ok {
			spec["input_channels"] = bands
		}
		if rs, ok := spec["reduction_scheme"].([]any); ok && len(rs) > 0 {
			rs = slices.Clone(rs)
			rs[0] = bands
			spec["reduction_scheme"] = rs
		}
	}
	if dn == "" {
		return "", fmt.Errorf("data.scene: the pipeline has no %s node to feed the scene's pixels and labels", dataNodeType)
	}
	return dn, nil
}

// adaptMasks restricts every IoULoss and AnomalyMetrics node to the pixels of the split
// (the data node's valid port) and runs one frame per batch.
func adaptMasks(cfg *config.Config, dn string) error {
	typeOf := func(n string) string { t, _ := cfg.Pipeline[n]["type"].(string); return t }
	add := func(to string) {
		c := dn + ".valid -> " + to + ".valid"
		for _, x := range cfg.Connections {
			if strings.Join(strings.Fields(x), " ") == c {
				return
			}
		}
		cfg.Connections = append(cfg.Connections, c)
	}
	for _, n := range cfg.LossNodes {
		switch typeOf(n) {
		case "IoULoss":
			add(n)
		default:
			for _, c := range cfg.Connections {
				a, b, err := config.ParseConnection(c)
				if err == nil && a == dn+".mask" && strings.HasPrefix(b, n+".") {
					return fmt.Errorf("data.scene: loss node %q (%s) reads the labels but cannot be restricted to the train pixels; use IoULoss", n, typeOf(n))
				}
			}
		}
	}
	metrics := 0
	for _, n := range cfg.MetricNodes {
		if typeOf(n) == "AnomalyMetrics" {
			add(n)
			metrics++
		}
	}
	if metrics == 0 {
		return fmt.Errorf("data.scene: metric_nodes %v holds no AnomalyMetrics node; whole-scene metrics need one to count only a split's pixels", cfg.MetricNodes)
	}
	cfg.Data.BatchSize = 1
	return nil
}

func isLentilsMapping(spec map[string]any) bool {
	return fmt.Sprint(spec["normal_class_ids"]) == "[0 1 2 4]" && fmt.Sprint(spec["anomaly_class_ids"]) == "[3]"
}
