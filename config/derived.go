package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/internal/anynum"
	"go.yaml.in/yaml/v3"
)

// DecodeSynth reads a trainrun's data.synth settings into sc (the keys the synthetic
// generator takes; anything else is an error naming the key).
func DecodeSynth(m map[string]any, sc *dataset.SynthConfig) error {
	for k, v := range m {
		f, ok := anynum.Float(v)
		if !ok {
			return fmt.Errorf("data.synth.%s: want a number, got %v", k, v)
		}
		switch k {
		case "frames":
			sc.Frames = int(f)
		case "height":
			sc.Height = int(f)
		case "width":
			sc.Width = int(f)
		case "seed":
			sc.Seed = uint64(f)
		case "stone_rate":
			sc.StoneRate = f
		case "bands":
			sc.Bands = int(f)
		default:
			return fmt.Errorf("data.synth.%s: unknown key (allowed: frames, height, width, seed, stone_rate, bands)", k)
		}
	}
	return nil
}

// ConfigChange is one config value changed on resume.
type ConfigChange struct {
	Key  string `json:"key"`
	From any    `json:"from"`
	To   any    `json:"to"`
}

// ResumeSafeKeys may be changed when a run is resumed.
var ResumeSafeKeys = []string{"training.trainer.max_epochs", "training.trainer.enable_progress_bar"}

func Diff(a, b *Config) ([]ConfigChange, error) {
	fa, err := flatConfig(a)
	if err != nil {
		return nil, err
	}
	fb, err := flatConfig(b)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	var out []ConfigChange
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if fmt.Sprint(fa[k]) != fmt.Sprint(fb[k]) {
			out = append(out, ConfigChange{Key: k, From: fa[k], To: fb[k]})
		}
	}
	return out, nil
}

func flatConfig(c *Config) (map[string]any, error) {
	y, err := c.YAML()
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(y, &m); err != nil {
		return nil, err
	}
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if mm, ok := v.(map[string]any); ok && len(mm) > 0 {
			for k, x := range mm {
				walk(strings.TrimPrefix(prefix+"."+k, "."), x)
			}
			return
		}
		out[prefix] = v
	}
	walk("", m)
	return out, nil
}

// PortRef splits "node.port" (a port reference of the evaluation config).
func PortRef(s string) (node, port string) {
	a, b, _ := strings.Cut(s, ".")
	return a, b
}
