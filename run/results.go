package run

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/internal/atomicfile"
)

// Result is what metrics.json holds.
type Result struct {
	Name          string         `json:"name"`
	Variant       string         `json:"variant"`
	Detector      string         `json:"detector"`
	Val           config.Metrics `json:"val"`
	Test          config.Metrics `json:"test"`
	SelectedBands []BandInfo     `json:"selected_bands,omitempty"`
	TrainSeconds  float64        `json:"train_seconds"`
	InferenceFPS  float64        `json:"inference_fps"`
	Epochs        int            `json:"epochs"`  // training epochs run (epoch 0, the initialisation's validation, is not one)
	Trained       bool           `json:"trained"` // whether any gradient epoch ran: false for a statistical variant and for a learned one run with max_epochs 0 (its initialisation)
	Checkpoint    string         `json:"checkpoint,omitempty"`
	// CheckpointEpoch is the epoch of the evaluated checkpoint (0: the initialisation was
	// best on validation); absent when no top-k checkpoint was evaluated.
	CheckpointEpoch *int          `json:"checkpoint_epoch,omitempty"`
	Device          string        `json:"device"`
	Threads         int           `json:"threads"`
	LibTorch        string        `json:"libtorch"`
	Seed            uint64        `json:"seed"`
	History         []EpochRecord `json:"history,omitempty"`
	Dir             string        `json:"run_dir"`
}

// BandInfo is one band chosen by a band selector.
type BandInfo struct {
	Channel    int     `json:"channel"`
	Band       int     `json:"band"`
	Wavelength float32 `json:"wavelength_nm"`
}

// EpochRecord is one epoch of training history. Epoch 0 is the initialised pipeline,
// validated before training (TrainLoss NaN: null in JSON); epoch N follows N training epochs.
type EpochRecord struct {
	Epoch       int            `json:"epoch"`
	TrainLoss   config.Float   `json:"train_loss"`
	ValLoss     config.Float   `json:"val_loss"`
	LR          float64        `json:"lr"`
	Temperature float64        `json:"temperature,omitempty"`
	Val         config.Metrics `json:"val"`
	Seconds     float64        `json:"seconds"`
}

// WriteResult puts res into the run directory dir as metrics.json (indented JSON), atomically.
// The caller holds the run's lock.
func WriteResult(dir string, res *Result) error {
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(Path(dir, MetricsFile), b, 0o600)
}

// ReadResult reads the metrics.json of the run directory dir. An error reading the file is
// os.ReadFile's (it names the file; fs.ErrNotExist when the run has none); a file that does
// not decode is reported with its path.
func ReadResult(dir string) (*Result, error) {
	path := Path(dir, MetricsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &res, nil
}
