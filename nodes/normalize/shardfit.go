package normalize

import (
	"fmt"
	"math"
)

// FitPartial returns the running minimum and maximum gathered since FitReset, for pooling
// a fit over the ranks of a data-parallel run (trainer.ShardFitter).
func (n *MinMaxNormalizer) FitPartial() ([]float64, error) { return []float64{n.fitLo, n.fitHi}, nil }

// FitMerge replaces them with the minimum and maximum over every rank's.
func (n *MinMaxNormalizer) FitMerge(parts [][]float64) error {
	lo, hi := math.Inf(1), math.Inf(-1)
	for r, p := range parts {
		if len(p) != 2 {
			return fmt.Errorf("node %q: rank %d sent %d statistics, want 2 (min, max)", n.Name(), r, len(p))
		}
		lo, hi = math.Min(lo, p[0]), math.Max(hi, p[1])
	}
	n.fitLo, n.fitHi = lo, hi
	return nil
}
