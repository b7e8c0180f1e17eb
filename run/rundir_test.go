package run

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLockExcludesASecondWriter(t *testing.T) {
	dir := t.TempDir()
	a, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second writer: %v (want ErrLocked naming pid %d)", err, os.Getpid())
	}
	a.Release()
	b, err := Acquire(dir)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	b.Release()
	b.Release()
}

func stage(t *testing.T, parent, name string, epoch int) []byte {
	t.Helper()
	s, err := Stage(parent, name)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1000)
	_, _ = rand.Read(data)
	if err := os.WriteFile(s.Path("weights.pt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(epoch); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCheckpointIsVerifiedAndFallsBack(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "checkpoints")
	stage(t, parent, "last", 0)
	d1 := stage(t, parent, "last", 1)
	last := filepath.Join(parent, "last")
	m, err := Verify(last)
	if err != nil || m.Epoch != 1 {
		t.Fatalf("verify: %v %+v", err, m)
	}
	if got, _ := os.ReadFile(filepath.Join(last, "weights.pt")); string(got) != string(d1) {
		t.Fatal("replaced checkpoint does not hold the new data")
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Fatalf("leftovers beside the checkpoint: %v", ents)
	}
	stage(t, parent, "epoch=00", 0)
	// a flipped byte is found; the fallback is the most recent complete checkpoint
	b, _ := os.ReadFile(filepath.Join(last, "weights.pt"))
	b[10] ^= 1
	if err := os.WriteFile(filepath.Join(last, "weights.pt"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(last); err == nil || !strings.Contains(err.Error(), "sha256") {
		t.Fatalf("damaged checkpoint verified: %v", err)
	}
	got, gm, note, err := Resolve(last)
	if err != nil || got != filepath.Join(parent, "epoch=00") || gm.Epoch != 0 || !strings.Contains(note, "falling back") {
		t.Fatalf("resolve: %q %v %q %v", got, gm, note, err)
	}
	// an interrupted replacement: last renamed to .last.prev, the new one not yet in place
	if err := os.RemoveAll(last); err != nil {
		t.Fatal(err)
	}
	stage(t, parent, "tmp", 5)
	if err := os.Rename(filepath.Join(parent, "tmp"), prevPath(parent, "last")); err != nil {
		t.Fatal(err)
	}
	got, gm, _, err = Resolve(last)
	if err != nil || got != prevPath(parent, "last") || gm.Epoch != 5 {
		t.Fatalf("resolve after interrupted rename: %q %v %v", got, gm, err)
	}
	// the next start puts it back and removes temporaries
	for _, n := range []string{".tmp-last-123", ".weights.pt.tmp456", "optim.pt.tmp"} {
		if err := os.WriteFile(filepath.Join(parent, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	did, err := CleanTemp(filepath.Dir(parent))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(last); err != nil {
		t.Fatalf("after clean: %v (did %v)", err, did)
	}
	ents, _ := os.ReadDir(parent)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "epoch=00,last" {
		t.Fatalf("after clean: %v (did %v)", names, did)
	}
	// none complete: an error naming the checkpoint
	if err := Remove(parent, "epoch=00"); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(last, ManifestName))
	if _, _, _, err := Resolve(last); err == nil || !strings.Contains(err.Error(), last) {
		t.Fatalf("resolve with nothing complete: %v", err)
	}
}

// TestBusyNamesTheHolderAndChangesNothing: Busy is nil for a directory nobody holds (with or
// without a lock file left behind), names the holder's pid while a writer holds it, and never
// creates the lock file.
func TestBusyNamesTheHolderAndChangesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := Busy(dir); err != nil {
		t.Fatalf("no lock file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LockName)); err == nil {
		t.Fatal("Busy created the lock file")
	}
	a, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := Busy(dir); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("held: %v (want ErrLocked naming pid %d)", err, os.Getpid())
	}
	a.Release()
	if err := Busy(dir); err != nil {
		t.Errorf("released, lock file left: %v", err)
	}
	b, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Busy: %v", err)
	}
	b.Release()
}
