package trainer

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spectraclip/spectraclip/config"
)

// Non-finite numbers, unknown variants and wrongly typed environment values are config
// errors that name the key (or the variable that set it); a FIFO config is refused
// without blocking.
func TestConfigRefusesHostileValues(t *testing.T) {
	for _, c := range []struct {
		overrides, environ []string
		want               string
	}{
		{overrides: []string{"training.optimizer.lr=.nan"}, want: "training.optimizer.lr"},
		{overrides: []string{"training.optimizer.weight_decay=.inf"}, want: "training.optimizer.weight_decay"},
		{overrides: []string{"training.optimizer.betas=[0.9, .nan]"}, want: "training.optimizer.betas[1]"},
		{overrides: []string{"training.scheduler.factor=-.inf"}, want: "training.scheduler.factor"},
		{overrides: []string{"variant=cnn"}, want: `variant: "cnn"`},
		{environ: []string{"SPECTRACLIP_TRAINING__OPTIMIZER__LR=fast"}, want: "environment SPECTRACLIP_TRAINING__OPTIMIZER__LR"},
		{environ: []string{"SPECTRACLIP_TRAINING__TRAINER__MAX_EPOCHS=ten"}, want: "environment SPECTRACLIP_TRAINING__TRAINER__MAX_EPOCHS"},
	} {
		_, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: c.overrides, Environ: c.environ})
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v %v: %v (want one line naming %s)", c.overrides, c.environ, err, c.want)
		}
	}
	// the override set the key after the environment: the override is at fault
	_, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.optimizer.lr=slow"}, Environ: []string{"SPECTRACLIP_TRAINING__OPTIMIZER__LR=fast"}})
	if err == nil || strings.Contains(err.Error(), "SPECTRACLIP_") {
		t.Errorf("override over environment: %v", err)
	}
	if _, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.optimizer.lr=1e-3"}}); err != nil {
		t.Errorf("a finite lr: %v", err)
	}
	fifo := filepath.Join(t.TempDir(), "run.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := config.LoadConfig(config.LoadOptions{File: fifo}); err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("FIFO config: %v", err)
	}
}
