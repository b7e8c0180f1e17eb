package config

import (
	"reflect"
	"testing"
)

// configEnv keeps the SPECTRACLIP_ variables that name config keys, in order, and passes
// over the others (NonConfigEnv, the SPECTRACLIP_TEST_* hooks, other prefixes, no "=").
func TestConfigEnv(t *testing.T) {
	environ := []string{
		"HOME=/root",
		"SPECTRACLIP_TRAINING__OPTIMIZER__LR=3e-4",
		"SPECTRACLIP_PLUGIN_CACHE=/x",
		"SPECTRACLIP_TEST_HOOK=1",
		"SPECTRACLIP_DATA__ROOT=",
		"SPECTRACLIP_NOVALUE",
		"XSPECTRACLIP_DATA__ROOT=/y",
		"SPECTRACLIP_DATA__BATCH_SIZE=a=b",
	}
	for _, k := range NonConfigEnv {
		environ = append(environ, k+"=1")
	}
	want := []envVar{
		{Name: "SPECTRACLIP_TRAINING__OPTIMIZER__LR", Key: "training.optimizer.lr", Value: "3e-4"},
		{Name: "SPECTRACLIP_DATA__ROOT", Key: "data.root", Value: ""},
		{Name: "SPECTRACLIP_DATA__BATCH_SIZE", Key: "data.batch_size", Value: "a=b"},
	}
	if got := configEnv(environ); !reflect.DeepEqual(got, want) {
		t.Fatalf("configEnv = %+v\nwant %+v", got, want)
	}
	if got := configEnv(nil); got != nil {
		t.Fatalf("configEnv(nil) = %+v", got)
	}
}

func TestOverrideKey(t *testing.T) {
	for ov, want := range map[string]string{
		"data.root=/x":        "data.root",
		"+data.extra=1":       "data.extra",
		" data.root =/x":      "data.root",
		"data.root":           "data.root",
		"data.batch_size=a=b": "data.batch_size",
		"":                    "",
	} {
		if got := overrideKey(ov); got != want {
			t.Errorf("overrideKey(%q) = %q, want %q", ov, got, want)
		}
	}
}

// envBlame names the variable that set the key an error is about, unless an override set it
// after the environment did.
func TestEnvBlame(t *testing.T) {
	environ := []string{"SPECTRACLIP_PLUGIN_CACHE=/x", "SPECTRACLIP_TRAINING__OPTIMIZER__LR=fast"}
	err := errString("training.optimizer.lr: want a number")
	if got := envBlame(err, environ, nil); got != "SPECTRACLIP_TRAINING__OPTIMIZER__LR" {
		t.Fatalf("envBlame = %q", got)
	}
	if got := envBlame(err, environ, []string{"training.optimizer.lr=0.1"}); got != "" {
		t.Fatalf("envBlame with an override = %q", got)
	}
	if got := envBlame(errString("data.root: missing"), environ, nil); got != "" {
		t.Fatalf("envBlame for another key = %q", got)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
