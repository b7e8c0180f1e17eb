package run

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// metrics.json round-trips through ReadResult and WriteResult byte for byte: the fixture run
// (written by the trainer before WriteResult existed) is read and written again unchanged, with
// the permissions the trainer gives it.
func TestResultRoundTrip(t *testing.T) {
	fixture := filepath.Join("testdata", "main-2026-12-06", "run")
	want, err := os.ReadFile(Path(fixture, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	res, err := ReadResult(fixture)
	if err != nil {
		t.Fatal(err)
	}
	if res.Name == "" || len(res.Test) == 0 || len(res.History) == 0 {
		t.Fatalf("fixture read back incompletely: name %q, %d test metrics, %d history records", res.Name, len(res.Test), len(res.History))
	}
	dir := t.TempDir()
	if err := WriteResult(dir, res); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(Path(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("metrics.json written again differs from the fixture:\n%s\nwant\n%s", got, want)
	}
	fi, err := os.Stat(Path(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("metrics.json mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := ReadResult(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteResult(dir, again); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(Path(dir, MetricsFile)); !bytes.Equal(b, want) {
		t.Errorf("second round trip differs:\n%s", b)
	}
}

// A run without metrics.json reads as fs.ErrNotExist; one that does not decode names its file.
func TestReadResultErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadResult(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no metrics.json: %v, want fs.ErrNotExist", err)
	}
	if err := os.WriteFile(Path(dir, MetricsFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := ReadResult(dir)
	var pe *fs.PathError
	if err == nil || errors.As(err, &pe) || !strings.Contains(err.Error(), Path(dir, MetricsFile)) {
		t.Errorf("truncated metrics.json: %v, want a decode error naming the file", err)
	}
}
