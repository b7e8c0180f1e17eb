package metriccore

import (
	"math"
	"sort"
)

// rankGroups sorts indices by descending score and calls fn once per group of tied scores with
// the group's positive and negative counts, highest scores first.
func rankGroups(scores []float64, labels []bool, fn func(pos, neg float64)) {
	idx := make([]int, len(scores))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(i, j int) bool { return scores[idx[i]] > scores[idx[j]] })
	for i := 0; i < len(idx); {
		var pos, neg float64
		j := i
		for ; j < len(idx) && scores[idx[j]] == scores[idx[i]]; j++ {
			if labels[idx[j]] {
				pos++
			} else {
				neg++
			}
		}
		fn(pos, neg)
		i = j
	}
}

func exactValid(scores []float64, labels []bool) bool {
	if len(scores) != len(labels) {
		return false
	}
	for _, s := range scores {
		if math.IsNaN(s) {
			return false
		}
	}
	return true
}

// ExactAUROC is the sort-based AUROC (Mann–Whitney U with ½ credit for tied scores, equal to
// sklearn's roc_auc_score). It needs O(N) memory and is the reference the binned Accumulator is
// tested against. It returns NaN (undefined) when either class is absent, and for mismatched
// lengths or NaN scores.
func ExactAUROC(scores []float64, labels []bool) float64 {
	if !exactValid(scores, labels) {
		return math.NaN()
	}
	var p, n, sum, negBelow float64
	// Walk from high to low; count negatives below each group by subtracting from the total.
	for _, l := range labels {
		if l {
			p++
		} else {
			n++
		}
	}
	if p == 0 || n == 0 {
		return math.NaN()
	}
	negBelow = n
	rankGroups(scores, labels, func(pos, neg float64) {
		negBelow -= neg
		sum += pos * (negBelow + 0.5*neg)
	})
	return sum / (p * n)
}

// ExactAP is sklearn's average_precision_score, Σ (R_n − R_{n−1}) P_n over the distinct score
// thresholds from high to low. It returns NaN (undefined) without positives, for mismatched
// lengths and for NaN scores.
func ExactAP(scores []float64, labels []bool) float64 {
	if !exactValid(scores, labels) {
		return math.NaN()
	}
	var p float64
	for _, l := range labels {
		if l {
			p++
		}
	}
	if p == 0 {
		return math.NaN()
	}
	var tp, fp, ap float64
	rankGroups(scores, labels, func(pos, neg float64) {
		tp += pos
		fp += neg
		ap += pos / p * tp / (tp + fp)
	})
	return ap
}
