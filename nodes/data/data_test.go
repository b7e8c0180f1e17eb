package data

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// The mask follows the reference's mapping; cube and values pass through.
func TestDataNodeMask(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	B, H, W, C := 2, 5, 4, 3
	cube := make([]float32, B*H*W*C)
	for i := range cube {
		cube[i] = rng.Float32()
	}
	ids := make([]int32, B*H*W)
	for i := range ids {
		ids[i] = int32(rng.IntN(5))
	}
	cases := []struct {
		normal, anomaly []any
		isAnomaly       func(int32) bool
	}{
		{[]any{0, 1}, nil, func(c int32) bool { return c != 0 && c != 1 }},
		{[]any{0, 1}, []any{3}, func(c int32) bool { return c == 3 }},
	}
	for _, c := range cases {
		params := map[string]any{"normal_class_ids": c.normal}
		if c.anomaly != nil {
			params["anomaly_class_ids"] = c.anomaly
		}
		n, err := nodes.Builtins.New("cuvis_ai.node.data.LentilsAnomalyDataNode", "data", params)
		if err != nil {
			t.Fatal(err)
		}
		s := torch.NewScope()
		batch, err := ToBatch(s, &dataset.Batch{Cube: cube, ClassIDs: ids, B: B, H: H, W: W, C: C, Wavelengths: []float32{500, 600, 700}, FrameIDs: []int{3, 9}}, torch.CPU, nil)
		if err != nil {
			t.Fatal(err)
		}
		out, err := n.Forward(&nodes.Context{Scope: s, Device: torch.CPU}, batch)
		if err != nil {
			t.Fatal(err)
		}
		mask := out["mask"].(*torch.Tensor)
		if got := mask.Shape(); len(got) != 4 || got[3] != 1 || got[0] != int64(B) {
			t.Fatalf("mask shape %v", got)
		}
		m, _ := mask.Bools()
		for i, id := range ids {
			if m[i] != c.isAnomaly(id) {
				t.Fatalf("pixel %d class %d: mask %v", i, id, m[i])
			}
		}
		back, _ := out["cube"].(*torch.Tensor).Float32s()
		for i := range cube {
			if back[i] != cube[i] {
				t.Fatalf("cube changed at %d", i)
			}
		}
		if fr := out["frame_ids"].([]int); fr[1] != 9 {
			t.Errorf("frame ids %v", fr)
		}
		s.Close()
	}
}

func TestDataNodeErrors(t *testing.T) {
	if _, err := New("d", map[string]any{"normal_class_ids": []any{0, 3}, "anomaly_class_ids": []any{3}}); err == nil || !strings.Contains(err.Error(), "d") {
		t.Errorf("overlap: %v", err)
	}
	if _, err := New("d", map[string]any{"normal": []any{0}}); err == nil || !strings.Contains(err.Error(), "normal") {
		t.Errorf("unknown key: %v", err)
	}
	n, _ := New("d", nil)
	s := torch.NewScope()
	defer s.Close()
	cube := s.Zeros([]int64{1, 2, 2, 3}, torch.Float32, torch.CPU)
	_, err := n.Forward(&nodes.Context{Scope: s}, map[string]any{KeyCube: cube, KeyClassIDs: []int32{1, 2, 3}})
	if err == nil || !strings.Contains(err.Error(), "class ids") {
		t.Errorf("size mismatch: %v", err)
	}
}
