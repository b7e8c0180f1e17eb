package dataset

import (
	"fmt"
	"slices"
)

// Lentils class ids, as printed by the reference examples from the COCO category map.
const (
	ClassUnlabeled    = 0
	ClassLentilsBlack = 1
	ClassLentilsBrown = 2
	ClassStone        = 3
	ClassBackground   = 4
)

// Category is a class id with its name.
type Category struct {
	ID   int    `yaml:"id" json:"id"`
	Name string `yaml:"name" json:"name"`
}

// LentilsCategories lists the Lentils classes in id order.
func LentilsCategories() []Category {
	return []Category{
		{ClassUnlabeled, "Unlabeled"},
		{ClassLentilsBlack, "Lentils_black"},
		{ClassLentilsBrown, "Lentils_brown"},
		{ClassStone, "Stone"},
		{ClassBackground, "Background"},
	}
}

// AnomalyMapping maps class ids to a binary anomaly label exactly as the reference
// BinaryAnomalyLabelMapper does.
type AnomalyMapping struct {
	Normal  []int
	Anomaly []int // nil: every id not in Normal is an anomaly
	// Gaps are the ids in 0..max(listed ids) that are in neither list when Anomaly is given;
	// the reference warns about them and treats them as normal.
	Gaps []int
}

// NewAnomalyMapping checks the two lists; it fails when an id is both normal and anomalous.
func NewAnomalyMapping(normal, anomaly []int) (*AnomalyMapping, error) {
	m := &AnomalyMapping{Normal: slices.Clone(normal)}
	if anomaly == nil {
		return m, nil
	}
	m.Anomaly = slices.Clone(anomaly)
	var overlap []int
	for _, a := range anomaly {
		if slices.Contains(normal, a) && !slices.Contains(overlap, a) {
			overlap = append(overlap, a)
		}
	}
	if len(overlap) > 0 {
		slices.Sort(overlap)
		return nil, fmt.Errorf("class ids %v are listed as both normal and anomaly", overlap)
	}
	maxID := 0
	for _, v := range append(slices.Clone(normal), anomaly...) {
		maxID = max(maxID, v)
	}
	for id := 0; id <= maxID; id++ {
		if !slices.Contains(normal, id) && !slices.Contains(anomaly, id) {
			m.Gaps = append(m.Gaps, id)
		}
	}
	return m, nil
}

// Warning returns the reference's warning text for Gaps, or "" when there are none.
func (m *AnomalyMapping) Warning() string {
	if len(m.Gaps) == 0 {
		return ""
	}
	return fmt.Sprintf("class ids %v are in neither normal_class_ids %v nor anomaly_class_ids %v; they are treated as normal", m.Gaps, m.Normal, m.Anomaly)
}

// IsAnomaly reports the binary label of one class id.
func (m *AnomalyMapping) IsAnomaly(id int32) bool {
	if m.Anomaly != nil {
		return slices.Contains(m.Anomaly, int(id))
	}
	return !slices.Contains(m.Normal, int(id))
}

// Apply maps class ids to anomaly flags into dst (allocated when nil or too short).
func (m *AnomalyMapping) Apply(classIDs []int32, dst []bool) []bool {
	if cap(dst) < len(classIDs) {
		dst = make([]bool, len(classIDs))
	}
	dst = dst[:len(classIDs)]
	// Class ids are small; a lookup table avoids a list scan per pixel.
	var lut [256]bool
	for i := range lut {
		lut[i] = m.IsAnomaly(int32(i))
	}
	for i, id := range classIDs {
		if id >= 0 && id < 256 {
			dst[i] = lut[id]
		} else {
			dst[i] = m.IsAnomaly(id)
		}
	}
	return dst
}

// BinaryAnomalyMask maps class ids to anomaly flags: with anomaly nil, every id not in normal
// is an anomaly; with anomaly given, exactly the ids in anomaly are (unlisted ids are normal).
// Overlap between the lists is an error. Ids in 0..max(listed) that are in neither list are
// reported by NewAnomalyMapping(...).Gaps, the reference's warning.
func BinaryAnomalyMask(classIDs []int32, normal []int, anomaly []int) ([]bool, error) {
	m, err := NewAnomalyMapping(normal, anomaly)
	if err != nil {
		return nil, err
	}
	return m.Apply(classIDs, nil), nil
}
