package run

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/internal/atomicfile"
)

// Calibration is what RUN/calibration.json holds: the F1-optimal absolute pixel threshold
// found on the validation split. Without anomaly pixels in the validation split there is no
// such threshold: PixelThreshold is NaN (null in JSON) and Note says why.
type Calibration struct {
	PixelThreshold config.Float   `json:"pixel_threshold"`
	F1             config.Float   `json:"f1_at_threshold"`
	Note           string         `json:"note,omitempty"`
	Current        config.Metrics `json:"current_decider_metrics"`
	File           string         `json:"file"`
}

// WriteCalibration puts c into the run directory dir as calibration.json (c.File is set to
// its path). The caller holds the run's lock.
func WriteCalibration(dir string, c *Calibration) error {
	c.File = Path(dir, CalibrationFile)
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", c.File, err)
	}
	return atomicfile.WriteFile(c.File, b, 0o600)
}

// CalibratedThreshold reads the pixel threshold of the run's calibration.json: ok is false
// when the run has none, or its threshold is undefined (null) or not finite.
func CalibratedThreshold(dir string) (thr float64, ok bool, err error) {
	path := Path(dir, CalibrationFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", path, err)
	}
	var c struct {
		PixelThreshold *config.Float `json:"pixel_threshold"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return 0, false, fmt.Errorf("%s: %w", path, err)
	}
	if c.PixelThreshold == nil {
		return 0, false, nil
	}
	t := float64(*c.PixelThreshold)
	if math.IsNaN(t) || math.IsInf(t, 0) {
		return 0, false, nil
	}
	return t, true, nil
}
