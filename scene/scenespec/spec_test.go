package scenespec

import (
	"reflect"
	"strings"
	"testing"
)

// ParseSpec reads numbers of the types the YAML decoders give (int, int64, uint64, float64)
// and refuses the rest naming the key; tile and block must be positive whole numbers.
func TestParseSpecNumbers(t *testing.T) {
	seed := int64(7)
	for _, c := range []struct {
		m    map[string]any
		want Spec
		err  string
	}{
		{m: map[string]any{"path": "x", "tile": 16, "block": int64(4), "seed": uint64(7), "fractions": []any{0.5, 0.25, 0.25}},
			want: Spec{Path: "x", Split: "auto", Fractions: [3]float64{0.5, 0.25, 0.25}, Block: 4, Tile: 16, Seed: &seed}},
		{m: map[string]any{"path": "x", "tile": 16.0, "seed": 7.0, "block": nil},
			want: Spec{Path: "x", Split: "auto", Fractions: DefaultFractions, Block: DefaultBlock, Tile: 16, Seed: &seed}},
		{m: map[string]any{"path": "x", "tile": float32(16)}, err: "data.scene.tile: want a number, got 16 (float32)"},
		{m: map[string]any{"path": "x", "block": int32(4)}, err: "data.scene.block: want a number, got 4 (int32)"},
		{m: map[string]any{"path": "x", "seed": "7"}, err: "data.scene.seed: want a number, got 7 (string)"},
		{m: map[string]any{"path": "x", "seed": true}, err: "data.scene.seed: want a number, got true (bool)"},
		{m: map[string]any{"path": "x", "tile": 0}, err: "data.scene.tile: want a positive whole number of pixels, got 0"},
		{m: map[string]any{"path": "x", "block": 2.5}, err: "data.scene.block: want a positive whole number of pixels, got 2.5"},
		{m: map[string]any{"path": "x", "fractions": []any{0.5, "a", 0.25}}, err: "data.scene.fractions: want a number, got a (string)"},
	} {
		s, err := Parse(c.m)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Parse(%v) error %v; want %q", c.m, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(s, c.want) {
			t.Errorf("Parse(%v) = %+v, %v; want %+v", c.m, s, err, c.want)
		}
	}
}
