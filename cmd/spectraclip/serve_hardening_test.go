package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeFlagBounds (#25 items 8, 9, 10, 12): every sizing flag of serve has an upper
// bound, checked before it is converted or used (--max-cube-mb 8796093022208 overflowed
// into a negative byte count that disabled the size checks); a non-positive --timeout, an
// in-flight budget smaller than one cube, an empty token file and half a TLS pair are
// refused, each with an error naming the flag, before the run is opened.
func TestServeFlagBounds(t *testing.T) {
	dir := t.TempDir() // not a run: a flag error must come first
	empty := filepath.Join(dir, "empty-token")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open-token")
	if err := os.WriteFile(open, []byte("s3cret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"--max-cube-mb", "8796093022208", "--max-cube-mb 8796093022208: must be ≤ 65536"},
		{"--max-cube-mb", "0", "--max-cube-mb 0: must be ≥ 1"},
		{"--threads", "100000", "--threads 100000: must be ≤ 256"},
		{"--workers", "1000", "--workers 1000: must be ≤ 64"},
		{"--max-batch", "100000000", "--max-batch 100000000: must be ≤ 1024"},
		{"--queue", "10000000", "--queue 10000000: must be ≤ 65536"},
		{"--timeout", "-1s", "--timeout -1s: must be > 0"},
		{"--timeout", "0s", "--timeout 0s: must be > 0"},
		{"--drain-timeout", "-1s", "--drain-timeout -1s: must be ≥ 0"},
		{"--max-inflight-mb", "0", "--max-inflight-mb 0: must be ≥ --max-cube-mb (256)"},
		{"--max-inflight-mb", "99999999999", "--max-inflight-mb 99999999999: must be ≤ 1048576"},
		{"--token-file", empty, "--token-file " + empty + ": empty"},
		{"--token-file", open, "--token-file " + open + ": readable by other users"},
		{"--token-file", filepath.Join(dir, "nope"), "--token-file " + filepath.Join(dir, "nope")},
		{"--tls-cert", filepath.Join(dir, "c.pem"), "--tls-cert and --tls-key go together"},
		{"--tls-key", filepath.Join(dir, "k.pem"), "--tls-cert and --tls-key go together"},
	} {
		_, err := runCLI(t, "serve", "--run", dir, "--addr", "127.0.0.1:0", "--grpc-addr", "", c[0], c[1])
		if err == nil || !strings.Contains(err.Error(), c[2]) {
			t.Errorf("serve %s %s: %v, want an error saying %q", c[0], c[1], err, c[2])
		}
	}
}

// TestServeDefaultsLoopback (#25 item 12): serve listens on loopback unless told otherwise.
func TestServeDefaultsLoopback(t *testing.T) {
	cmd := newServeCmd(&globals{})
	for flag, want := range map[string]string{"addr": "127.0.0.1:8080", "grpc-addr": "127.0.0.1:9090"} {
		if got := cmd.Flags().Lookup(flag).DefValue; got != want {
			t.Errorf("--%s defaults to %q, want %q", flag, got, want)
		}
	}
}
