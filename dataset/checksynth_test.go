package dataset

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestCheckSynthScript generates a small set and compares the Go loader with
// scripts/check_synth.py, which reads the ENVI frames and the COCO file on its own with numpy.
func TestCheckSynthScript(t *testing.T) {
	needNumpy(t)
	for _, il := range []string{"bsq", "bip"} {
		t.Run(il, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "synth")
			cfg := smallSynth()
			cfg.Interleave = il
			if err := GenerateSynthetic(dir, cfg); err != nil {
				t.Fatal(err)
			}
			script, _ := filepath.Abs("../scripts/check_synth.py")
			out := runPython(t, ".", mustRead(t, script), dir, "--json")
			var py struct {
				Frames []struct {
					ID          int     `json:"id"`
					Shape       []int   `json:"shape"`
					StonePixels int     `json:"stone_pixels"`
					Histogram   []int   `json:"histogram"`
					Sum         float64 `json:"sum"`
					Checksum    float64 `json:"checksum"`
				} `json:"frames"`
			}
			if err := json.Unmarshal([]byte(out), &py); err != nil {
				t.Fatalf("script output %q: %v", out, err)
			}
			d, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(py.Frames) != len(d.Frames) {
				t.Fatalf("script saw %d frames, Go %d", len(py.Frames), len(d.Frames))
			}
			totalStones := 0
			for _, pf := range py.Frames {
				s, err := d.Load(pf.ID)
				if err != nil {
					t.Fatal(err)
				}
				if pf.Shape[0] != s.H || pf.Shape[1] != s.W || pf.Shape[2] != s.C {
					t.Fatalf("frame %d: script shape %v, Go %d×%d×%d", pf.ID, pf.Shape, s.H, s.W, s.C)
				}
				var hist [5]int
				for _, v := range s.ClassIDs {
					hist[v]++
				}
				for k := range hist {
					if hist[k] != pf.Histogram[k] {
						t.Fatalf("frame %d: class histogram Go %v, script %v", pf.ID, hist, pf.Histogram)
					}
				}
				var sum, check float64
				for r := 0; r < s.H; r++ {
					for c := 0; c < s.W; c++ {
						for b := 0; b < s.C; b++ {
							v := float64(s.Cube[(r*s.W+c)*s.C+b])
							sum += v
							check += v * float64((r*31+c*17+b*7)%13+1)
						}
					}
				}
				// Same float32 values summed in float64 in another order: 1e-9 relative.
				if math.Abs(sum-pf.Sum) > 1e-9*math.Abs(sum) || math.Abs(check-pf.Checksum) > 1e-9*math.Abs(check) {
					t.Fatalf("frame %d: sum/checksum Go %.9g/%.9g, script %.9g/%.9g", pf.ID, sum, check, pf.Sum, pf.Checksum)
				}
				totalStones += pf.StonePixels
			}
			if totalStones == 0 {
				t.Fatal("no stone pixels at all")
			}
		})
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
