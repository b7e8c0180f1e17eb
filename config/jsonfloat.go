package config

import (
	"encoding/json"
	"math"
	"strconv"
)

// Float is a float64 that JSON-encodes NaN and ±Inf as null (and reads null back as NaN),
// since encoding/json rejects them and "no value yet" is a normal state here.
type Float float64

// MarshalJSON implements json.Marshaler.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(v)
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// Metrics maps metric names to values. JSON writes an undefined (NaN) or infinite value as
// null and reads null back as NaN, so that "AUROC undefined: no anomaly pixels" survives a
// round trip through metrics.json instead of failing the write or turning into 0.
type Metrics map[string]float64

// MarshalJSON implements json.Marshaler.
func (m Metrics) MarshalJSON() ([]byte, error) {
	if m == nil {
		return []byte("null"), nil
	}
	t := make(map[string]Float, len(m))
	for k, v := range m {
		t[k] = Float(v)
	}
	return json.Marshal(t)
}

// UnmarshalJSON implements json.Unmarshaler.
func (m *Metrics) UnmarshalJSON(b []byte) error {
	var t map[string]*float64
	if err := json.Unmarshal(b, &t); err != nil {
		return err
	}
	if t == nil {
		*m = nil
		return nil
	}
	*m = make(Metrics, len(t))
	for k, v := range t {
		if v == nil {
			(*m)[k] = math.NaN()
		} else {
			(*m)[k] = *v
		}
	}
	return nil
}

// FormatMetric prints a metric value with four decimals, or "undefined" for NaN.
func FormatMetric(v float64) string {
	if math.IsNaN(v) {
		return "undefined"
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}
