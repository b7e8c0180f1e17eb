package scene

import (
	"fmt"
	"math"
	"time"

	metriccore "github.com/spectraclip/spectraclip/nodes/metric/core"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes/detect"
)

// DetectResult is what `spectraclip detect` reports.
type DetectResult struct {
	Input     string       `json:"input"`
	Detector  string       `json:"detector"`
	H         int          `json:"height"`
	W         int          `json:"width"`
	C         int          `json:"bands"`
	HasTruth  bool         `json:"has_ground_truth"`
	Anomalies int          `json:"anomaly_pixels"`
	AUROC     config.Float `json:"pixel_roc_auc"` // NaN (null) when undefined
	// AUROCNote says why AUROC is undefined ("undefined (no anomaly pixels)"); empty otherwise.
	AUROCNote string  `json:"pixel_roc_auc_note,omitempty"`
	Seconds   float64 `json:"seconds"`
}

// Detect runs global RX on a whole scene and, with ground truth, its pixel ROC AUC.
func Detect(path, cubeVar, gtVar string) (*DetectResult, error) {
	cube, gt, err := dataset.LoadScene(path, dataset.SceneOptions{CubeVar: cubeVar, GTVar: gtVar})
	if err != nil {
		return nil, err
	}
	if row, col, band, v, bad := firstNonFinite(cube); bad {
		return nil, fmt.Errorf("%s: value %v (NaN/Inf) at row %d, column %d, band %d: RX needs finite values (mask or replace them first)", path, v, row, col, band)
	}
	t0 := time.Now()
	scores, err := detect.RX(cube.Data, cube.H, cube.W, cube.C)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	res := &DetectResult{Input: path, Detector: "rx", H: cube.H, W: cube.W, C: cube.C, Seconds: time.Since(t0).Seconds(), AUROC: config.Float(math.NaN())}
	if gt != nil {
		labels := make([]bool, len(gt.IDs))
		for i, v := range gt.IDs {
			labels[i] = v != 0
			if labels[i] {
				res.Anomalies++
			}
		}
		res.HasTruth = true
		switch res.Anomalies {
		case 0:
			res.AUROCNote = "undefined (no anomaly pixels)"
		case len(labels):
			res.AUROCNote = "undefined (no normal pixels)"
		default:
			res.AUROC = config.Float(metriccore.ExactAUROC(scores, labels))
		}
	}
	return res, nil
}

// firstNonFinite finds the first NaN or ±Inf of a cube.
func firstNonFinite(c *dataset.Cube) (row, col, band int, v float32, found bool) {
	i := dataset.FirstNonFinite(c.Data)
	if i < 0 {
		return 0, 0, 0, 0, false
	}
	px := i / c.C
	return px / c.W, px % c.W, i % c.C, c.Data[i], true
}
