package reduce

import "fmt"

// Pooling a statistical fit over the ranks of a data-parallel run (trainer.ShardFitter):
// each rank's covariance statistics travel as [c, n, mean (c), M2 (c×c)] (empty when the
// rank saw no pixels) and are merged in rank order with the same parallel update as
// addBatch, so every rank decomposes the same covariance.

func (cs *covStats) partial() []float64 {
	if cs == nil {
		return nil
	}
	out := make([]float64, 0, 2+cs.c+cs.c*cs.c)
	out = append(out, float64(cs.c), cs.n)
	out = append(out, cs.mean...)
	return append(out, cs.m2...)
}

// mergeCovParts pools every rank's partial statistics (nil when none saw pixels).
func mergeCovParts(parts [][]float64) (*covStats, error) {
	var cs *covStats
	for r, p := range parts {
		if len(p) == 0 {
			continue
		}
		c := int(p[0])
		if c < 1 || len(p) != 2+c+c*c {
			return nil, fmt.Errorf("rank %d sent %d values of covariance statistics, not 2+c+c² for c=%d", r, len(p), c)
		}
		if cs == nil {
			cs = newCovStats(c)
		} else if cs.c != c {
			return nil, fmt.Errorf("rank %d fitted %d channels, another rank %d", r, c, cs.c)
		}
		nb, mb, m2b := p[1], p[2:2+c], p[2+c:]
		if nb == 0 {
			continue
		}
		na := cs.n
		n := na + nb
		f := na * nb / n
		delta := make([]float64, c)
		for i := range delta {
			delta[i] = mb[i] - cs.mean[i]
		}
		for i := 0; i < c; i++ {
			for j := 0; j < c; j++ {
				cs.m2[i*c+j] += m2b[i*c+j] + delta[i]*delta[j]*f
			}
		}
		for i := range cs.mean {
			cs.mean[i] += delta[i] * nb / n
		}
		cs.n = n
	}
	return cs, nil
}

// FitPartial returns the covariance statistics gathered since FitReset.
func (n *TrainablePCA) FitPartial() ([]float64, error) { return n.stats.partial(), nil }

// FitMerge replaces the statistics with the pool of every rank's.
func (n *TrainablePCA) FitMerge(parts [][]float64) error {
	cs, err := mergeCovParts(parts)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name(), err)
	}
	n.stats = cs
	return nil
}

// FitPartial returns the covariance statistics of the pca initialisation.
func (n *LearnableChannelMixer) FitPartial() ([]float64, error) { return n.stats.partial(), nil }

// FitMerge replaces the statistics with the pool of every rank's.
func (n *LearnableChannelMixer) FitMerge(parts [][]float64) error {
	cs, err := mergeCovParts(parts)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name(), err)
	}
	n.stats = cs
	return nil
}
