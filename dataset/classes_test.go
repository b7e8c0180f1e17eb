package dataset

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestBinaryAnomalyMask(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	ids := make([]int32, 500)
	for i := range ids {
		ids[i] = int32(rng.IntN(8)) // includes ids above every listed one
	}
	tests := []struct {
		name            string
		normal, anomaly []int
		rule            func(id int32) bool
		gaps            []int
		wantErr         string
	}{
		{name: "PCA baseline: normal 0,1 only", normal: []int{0, 1},
			rule: func(id int32) bool { return id != 0 && id != 1 }},
		{name: "DRCNN: normal 0,1, anomaly 3", normal: []int{0, 1}, anomaly: []int{3},
			rule: func(id int32) bool { return id == 3 }, gaps: []int{2}},
		{name: "all Lentils ids listed", normal: []int{0, 1, 2, 4}, anomaly: []int{3},
			rule: func(id int32) bool { return id == 3 }},
		{name: "empty anomaly list: nothing anomalous", normal: []int{1}, anomaly: []int{},
			rule: func(id int32) bool { return false }, gaps: []int{0}},
		{name: "overlap", normal: []int{0, 3}, anomaly: []int{3, 4}, wantErr: "[3]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BinaryAnomalyMask(ids, tc.normal, tc.anomaly)
			if tc.wantErr != "" {
				mustContain(t, err, tc.wantErr, "both normal and anomaly")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, id := range ids {
				if got[i] != tc.rule(id) {
					t.Fatalf("id %d mapped to %v", id, got[i])
				}
			}
			m, _ := NewAnomalyMapping(tc.normal, tc.anomaly)
			if !slices.Equal(m.Gaps, tc.gaps) {
				t.Fatalf("gaps %v, want %v", m.Gaps, tc.gaps)
			}
			if (m.Warning() != "") != (len(tc.gaps) > 0) {
				t.Fatalf("warning %q for gaps %v", m.Warning(), tc.gaps)
			}
		})
	}
	if got := fmt.Sprint(LentilsCategories()); got != "[{0 Unlabeled} {1 Lentils_black} {2 Lentils_brown} {3 Stone} {4 Background}]" {
		t.Fatalf("categories %s", got)
	}
}
