package detect

import (
	"math"
	"os"
	"sort"
	"testing"

	"github.com/spectraclip/spectraclip/dataset"
)

// stoneBands picks, on the training frames, the three bands with the largest Fisher ratio
// (mean difference² over summed variances) between stone and lentil pixels: stones copy a
// lentil's look, so the bands that tell the two apart are the ones a reducer should find.
func stoneBands(t *testing.T, ds *dataset.Dataset) []int {
	ids, err := ds.Split("train")
	if err != nil {
		t.Fatal(err)
	}
	c := ds.Bands
	var s1, s2 [2][]float64
	var cnt [2]float64
	for k := range 2 {
		s1[k], s2[k] = make([]float64, c), make([]float64, c)
	}
	for _, id := range ids {
		smp, err := ds.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		for p := 0; p < smp.H*smp.W; p++ {
			k := 0
			switch smp.ClassIDs[p] {
			case dataset.ClassStone:
				k = 1
			case dataset.ClassLentilsBlack, dataset.ClassLentilsBrown:
			default:
				continue
			}
			cnt[k]++
			for b := 0; b < c; b++ {
				v := float64(smp.Cube[p*c+b])
				s1[k][b] += v
				s2[k][b] += v * v
			}
		}
	}
	score := make([]float64, c)
	for b := 0; b < c; b++ {
		m0, m1 := s1[0][b]/cnt[0], s1[1][b]/cnt[1]
		v0, v1 := s2[0][b]/cnt[0]-m0*m0, s2[1][b]/cnt[1]-m1*m1
		score[b] = (m1 - m0) * (m1 - m0) / (v0 + v1)
	}
	order := make([]int, c)
	for b := range order {
		order[b] = b
	}
	sort.Slice(order, func(i, j int) bool { return score[order[i]] > score[order[j]] })
	return order[:3]
}

func TestBuiltinDetectsSyntheticStones(t *testing.T) {
	if testing.Short() {
		t.Skip("generates a synthetic dataset")
	}
	dir := t.TempDir()
	if err := dataset.GenerateSynthetic(dir, dataset.DefaultSynthConfig()); err != nil {
		t.Fatal(err)
	}
	ds, err := dataset.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	bands := stoneBands(t, ds)
	ids, err := ds.Split("test")
	if err != nil {
		t.Fatal(err)
	}
	d := newDetector(t, nil) // defaults: built-in, S = 224, σ = 4, zero padding
	var all []float64
	var labels []bool
	for _, id := range ids {
		smp, err := ds.Load(id)
		if err != nil {
			t.Fatal(err)
		}
		n := smp.H * smp.W
		img := make([]float32, 3*n)
		for ch, b := range bands { // per-band min-max to [0,1], like the MinMaxNormalizer
			lo, hi := math.Inf(1), math.Inf(-1)
			for p := 0; p < n; p++ {
				v := float64(smp.Cube[p*smp.C+b])
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
			for p := 0; p < n; p++ {
				img[p*3+ch] = float32((float64(smp.Cube[p*smp.C+b]) - lo) / (hi - lo))
			}
		}
		sc, _ := runDetector(t, d, img, 1, smp.H, smp.W)
		for p := 0; p < n; p++ {
			all = append(all, float64(sc[p]))
			labels = append(labels, smp.ClassIDs[p] == dataset.ClassStone)
		}
	}
	auc := ROCAUC(all, labels)
	t.Logf("bands %v (%.0f, %.0f, %.0f nm): built-in detector pixel ROC AUC %.4f on %d test frames",
		bands, ds.Wavelengths[bands[0]], ds.Wavelengths[bands[1]], ds.Wavelengths[bands[2]], auc, len(ids))
	if auc < 0.9 {
		t.Errorf("pixel ROC AUC %.4f, want >= 0.9", auc)
	}
}

func TestBuiltinOnABUAirport(t *testing.T) {
	if _, err := os.Stat(abuPath); err != nil {
		t.Skipf("ABU scene not available (%v)", err)
	}
	cube, gt, err := dataset.LoadScene(abuPath, dataset.SceneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := cube.H * cube.W
	// Three evenly spaced bands, min-max scaled; informational (no published figure).
	bands := []int{cube.C / 4, cube.C / 2, 3 * cube.C / 4}
	img := make([]float32, 3*n)
	for ch, b := range bands {
		lo, hi := math.Inf(1), math.Inf(-1)
		for p := 0; p < n; p++ {
			v := float64(cube.Data[p*cube.C+b])
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		for p := 0; p < n; p++ {
			img[p*3+ch] = float32((float64(cube.Data[p*cube.C+b]) - lo) / (hi - lo))
		}
	}
	d := newDetector(t, nil)
	sc, _ := runDetector(t, d, img, 1, cube.H, cube.W)
	scores := make([]float64, n)
	labels := make([]bool, n)
	for p := range scores {
		scores[p] = float64(sc[p])
		labels[p] = gt.IDs[p] != 0
	}
	auc := ROCAUC(scores, labels)
	t.Logf("built-in detector on ABU airport-1, bands %v: pixel ROC AUC %.4f", bands, auc)
	if auc < 0.5 {
		t.Errorf("AUC %.4f is below chance", auc)
	}
}
