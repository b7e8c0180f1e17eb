package infer

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/trainer"
)

// trainTiny trains variant on a small synthetic set in dir (seconds) and returns the run
// directory. extra are more config overrides.
func trainTiny(tb testing.TB, dir, variant string, threads int, extra ...string) string {
	tb.Helper()
	ov := append([]string{
		"data.root=" + filepath.Join(dir, "data"), "data.generate_if_missing=true", "data.synth.frames=8",
		"data.synth.height=32", "data.synth.width=32", "training.trainer.max_epochs=1",
		"training.threads=" + strconv.Itoa(threads), "training.trainer.enable_progress_bar=false",
	}, extra...)
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: variant, Overrides: ov})
	if err != nil {
		tb.Fatal(err)
	}
	res, err := trainer.Train(cfg, trainer.Options{OutDir: filepath.Join(dir, "run_"+variant)})
	if err != nil {
		tb.Fatal(err)
	}
	return res.Dir
}

// writeFrames writes n random h×w×61 float32 ENVI cubes (BIP, as the camera's) into dir as
// frame_NNN.hdr/.img and returns the bytes of one cube. Each frame differs in its first
// values, so that no two files are the same.
func writeFrames(tb testing.TB, dir string, n, h, w int, seed uint64) int64 {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	const C = 61
	rng := rand.New(rand.NewPCG(seed, 7))
	c := &dataset.Cube{H: h, W: w, C: C, Data: make([]float32, h*w*C), Wavelengths: make([]float32, C)}
	for i := range c.Wavelengths {
		c.Wavelengths[i] = 430 + 8*float32(i)
	}
	for i := range c.Data {
		c.Data[i] = rng.Float32()
	}
	for k := 0; k < n; k++ {
		for i := 0; i < 64 && i < len(c.Data); i++ {
			c.Data[i] = rng.Float32()
		}
		if err := dataset.WriteENVI(filepath.Join(dir, fmt.Sprintf("frame_%03d", k)), c, dataset.ENVIWriteOptions{}); err != nil {
			tb.Fatal(err)
		}
	}
	return int64(len(c.Data)) * 4
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// addFramesOfSize writes len(names) frames of h×w (seed) into scratch and copies them into
// in under names, so that in's frame size changes where the names sort.
func addFramesOfSize(t *testing.T, in, scratch string, h, w int, seed uint64, names ...string) {
	t.Helper()
	writeFrames(t, scratch, len(names), h, w, seed)
	for k, name := range names {
		for _, ext := range []string{".hdr", ".img"} {
			b, err := os.ReadFile(filepath.Join(scratch, fmt.Sprintf("frame_%03d", k)+ext))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(in, name+ext), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
