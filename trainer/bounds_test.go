package trainer

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/config"
)

// TestConfigBounds: values that exhaust memory or silently do something else are refused
// with the key and its bound (before: data.root= generated a synthetic set in the working
// directory, save_top_k=-5 and a 100000 batch or prefetch were accepted); the bounds
// themselves pass.
func TestConfigBounds(t *testing.T) {
	load := func(ov ...string) error {
		cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "pca", Overrides: ov})
		if err == nil {
			err = cfg.Validate()
		}
		return err
	}
	for _, tc := range []struct {
		ov   string
		want []string
	}{
		{"data.root=", []string{"data.root", "empty"}},
		{"data.root=' '", []string{"data.root", "empty"}},
		{"training.callbacks.checkpoint.save_top_k=-5", []string{"save_top_k", "-5", "-1"}},
		{"data.batch_size=100000", []string{"data.batch_size", "100000", "1024"}},
		{"data.prefetch=100000", []string{"data.prefetch", "100000", "64"}},
		{"data.prefetch=-2", []string{"data.prefetch", "-2"}},
		{fmt.Sprintf("training.threads=%d", config.MaxThreads()+1), []string{"training.threads", fmt.Sprint(config.MaxThreads())}},
	} {
		err := load(tc.ov)
		if err == nil {
			t.Errorf("%s: accepted", tc.ov)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.ov, err, w)
			}
		}
	}
	if err := load("training.callbacks.checkpoint.save_top_k=-1", "data.batch_size=1024", "data.prefetch=64", "data.prefetch=-1",
		fmt.Sprintf("training.threads=%d", config.MaxThreads())); err != nil {
		t.Fatalf("the bounds themselves: %v", err)
	}
	if err := config.CheckThreads("--threads", config.MaxThreads()+1); err == nil || !strings.Contains(err.Error(), "--threads") {
		t.Fatalf("CheckThreads: %v", err)
	}
}
