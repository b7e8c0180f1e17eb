package scene

import (
	"encoding/json"
	"math"
	"testing"
)

// Value's JSON and text forms: a number with encoding/json's digits and %.4f, or null and
// "undefined"; null reads back as Undefined itself (V 0), a number as Def of it.
func TestValueForms(t *testing.T) {
	for _, c := range []struct {
		v          Value
		json, text string
	}{
		{Def(0.8221), "0.8221", "0.8221"},
		{Def(1e-7), "1e-7", "0.0000"},
		{Def(math.Copysign(0, -1)), "-0", "-0.0000"},
		{Def(3), "3", "3.0000"},
		{Def(1e21), "1e+21", "1000000000000000000000.0000"},
		{Def(math.NaN()), "null", "undefined"},
		{Def(math.Inf(1)), "null", "undefined"},
		{Undefined, "null", "undefined"},
		{Value{V: 5}, "null", "undefined"},
	} {
		b, err := json.Marshal(c.v)
		if err != nil || string(b) != c.json {
			t.Errorf("json.Marshal(%#v) = %s, %v; want %s", c.v, b, err, c.json)
		}
		if s := c.v.String(); s != c.text {
			t.Errorf("%#v.String() = %q; want %q", c.v, s, c.text)
		}
	}
	var m PixelMetrics
	if err := json.Unmarshal([]byte(`{"auroc":0.5,"average_precision":null,"iou":1e-7,"f1_score":null,"threshold":-2,"anomaly_pixels":3,"pixels":9}`), &m); err != nil {
		t.Fatal(err)
	}
	want := PixelMetrics{AUROC: Def(0.5), AP: Undefined, IoU: Def(1e-7), F1: Undefined, Threshold: Def(-2), Anomalies: 3, Pixels: 9}
	if m != want {
		t.Fatalf("unmarshal = %+v, want %+v", m, want)
	}
	var v Value
	for _, bad := range []string{`"1"`, `true`, `1e999`, `[]`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s read as %#v", bad, v)
		}
	}
}
