package atomicfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// mustWrite writes data to p, creating its directories.
func mustWrite(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantFile fails unless p holds exactly data.
func wantFile(t *testing.T, what, p, data string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if !bytes.Equal(b, []byte(data)) {
		t.Errorf("%s: %s holds %q, want %q", what, p, b, data)
	}
}

// wantAbsent fails unless nothing stands at p.
func wantAbsent(t *testing.T, what, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %s still exists (%v)", what, p, err)
	}
}

// dirExists says whether err is os.Rename's refusal to replace a directory (EEXIST; rename(2)
// itself says ENOTEMPTY for a non-empty one).
func dirExists(err error) bool {
	return errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY)
}

// TestRename: a file moves to another directory and replaces a file there; a directory moves
// to another directory; a directory does not replace a non-empty or an empty one (nothing
// changes, the error is os.Rename's); a missing source fails with os.Rename's error.
func TestRename(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a", "f.txt"), filepath.Join(dir, "b", "g.txt")
	mustWrite(t, src, "new")
	mustWrite(t, dst, "old")
	if err := Rename(src, dst); err != nil {
		t.Fatal(err)
	}
	wantFile(t, "file renamed over a file in another directory", dst, "new")
	wantAbsent(t, "file renamed", src)

	d1, d2 := filepath.Join(dir, "d1"), filepath.Join(dir, "d2")
	mustWrite(t, filepath.Join(d1, "x"), "x1")
	mustWrite(t, filepath.Join(d2, "y"), "y2")
	err := Rename(d1, d2)
	want := os.Rename(d1, d2)
	if err == nil || !dirExists(err) {
		t.Fatalf("directory over a non-empty directory: error %v, want EEXIST", err)
	}
	if err.Error() != want.Error() {
		t.Errorf("error %q, os.Rename says %q", err, want)
	}
	wantFile(t, "failed rename, source", filepath.Join(d1, "x"), "x1")
	wantFile(t, "failed rename, target", filepath.Join(d2, "y"), "y2")
	wantAbsent(t, "failed rename", filepath.Join(d2, "x"))

	d3 := filepath.Join(dir, "attic", "d3")
	if err := os.MkdirAll(d3, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Rename(d1, d3); err == nil || !dirExists(err) {
		t.Fatalf("directory over an empty directory: error %v, want EEXIST", err)
	}
	wantFile(t, "failed rename over an empty directory", filepath.Join(d1, "x"), "x1")
	if err := os.Remove(d3); err != nil {
		t.Fatal(err)
	}
	if err := Rename(d1, d3); err != nil {
		t.Fatal(err)
	}
	wantFile(t, "directory moved", filepath.Join(d3, "x"), "x1")
	wantAbsent(t, "directory moved", d1)

	missing := filepath.Join(dir, "missing")
	err = Rename(missing, filepath.Join(dir, "z"))
	if want := os.Rename(missing, filepath.Join(dir, "z")); err == nil || err.Error() != want.Error() || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing source: error %v, want %v", err, want)
	}
}

// TestPutDir: a directory tree built under a temporary name is in place, whole, under the
// final name (and gone from the temporary one); a directory (empty or not) or a file at the
// final name makes it fail with nothing changed, the temporary directory kept; so does a
// missing parent.
func TestPutDir(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"a.txt": "alpha", "sub/b.bin": "beta", "sub/deeper/c": "gamma", "empty": ""}
	build := func(name string) string {
		tmp := filepath.Join(dir, name)
		for f, data := range files {
			mustWrite(t, filepath.Join(tmp, f), data)
		}
		if err := os.Symlink("a.txt", filepath.Join(tmp, "link")); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mkfifo(filepath.Join(tmp, "sub", "fifo"), 0o644); err != nil {
			t.Fatal(err)
		}
		return tmp
	}
	check := func(what, root string) {
		t.Helper()
		for f, data := range files {
			wantFile(t, what, filepath.Join(root, f), data)
		}
		if l, err := os.Readlink(filepath.Join(root, "link")); err != nil || l != "a.txt" {
			t.Errorf("%s: link %q, %v", what, l, err)
		}
		if st, err := os.Lstat(filepath.Join(root, "sub", "fifo")); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("%s: fifo %v, %v", what, st, err)
		}
	}

	tmp := build(".set.partial-1")
	final := filepath.Join(dir, "set")
	putDir(t, tmp, final)
	check("put into place", final)
	wantAbsent(t, "put into place", tmp)

	// An empty directory at the final name is not replaced (os.Rename's EEXIST); once it
	// is removed the same temporary directory goes into place.
	tmp = build(".set2.partial-1")
	final2 := filepath.Join(dir, "set2")
	if err := os.Mkdir(final2, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := PutDir(tmp, final2); err == nil || !dirExists(err) {
		t.Fatalf("over an empty directory: error %v, want EEXIST", err)
	}
	check("the temporary directory after the refusal", tmp)
	if ents, err := os.ReadDir(final2); err != nil || len(ents) != 0 {
		t.Errorf("the empty directory after the refusal: %v, %v", ents, err)
	}
	if err := os.Remove(final2); err != nil {
		t.Fatal(err)
	}
	putDir(t, tmp, final2)
	check("after removing the empty directory", final2)
	wantAbsent(t, "after removing the empty directory", tmp)

	// Over the non-empty final: refused, both as they were.
	tmp = build(".set.partial-2")
	mustWrite(t, filepath.Join(tmp, "a.txt"), "changed")
	if err := PutDir(tmp, final); err == nil || !dirExists(err) {
		t.Fatalf("over a non-empty directory: error %v, want EEXIST", err)
	}
	check("the existing directory after the refusal", final)
	wantFile(t, "the temporary directory after the refusal", filepath.Join(tmp, "a.txt"), "changed")

	// Over a file, or into a missing directory: refused, the temporary directory kept.
	file := filepath.Join(dir, "file")
	mustWrite(t, file, "plain")
	if err := PutDir(tmp, file); err == nil {
		t.Error("over a file: no error")
	}
	wantFile(t, "the file after the refusal", file, "plain")
	if err := PutDir(tmp, filepath.Join(dir, "no", "such")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing parent: error %v", err)
	}
	wantFile(t, "the temporary directory after the refusals", filepath.Join(tmp, "a.txt"), "changed")

	// A missing temporary directory fails in the sync, before any rename.
	if err := PutDir(filepath.Join(dir, "missing"), filepath.Join(dir, "set3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing directory: error %v", err)
	}
	wantAbsent(t, "missing directory", filepath.Join(dir, "set3"))
}

// putDir runs PutDir with a deadline: syncing must not open (and block on) the FIFO.
func putDir(t *testing.T, tmp, final string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- PutDir(tmp, final) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("PutDir hangs (a FIFO opened?)")
	}
}

// TestSyncTree: a tree with files, directories, a link and a FIFO syncs; a file alone syncs;
// a missing root fails.
func TestSyncTree(t *testing.T) {
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "t", "s", "f"), "data")
	if err := syscall.Mkfifo(filepath.Join(dir, "t", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent", filepath.Join(dir, "t", "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := SyncTree(filepath.Join(dir, "t")); err != nil {
		t.Fatal(err)
	}
	if err := SyncTree(filepath.Join(dir, "t", "s", "f")); err != nil {
		t.Fatal(err)
	}
	if err := SyncTree(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing root: %v", err)
	}
}

// TestMoveInto: entries of a finished directory go into an existing one in the given order,
// before seeing each destination first; an existing file is replaced; an existing directory
// stops the moves there with os.Rename's error: what moved before stays moved, the rest stays.
func TestMoveInto(t *testing.T) {
	dir := t.TempDir()
	from, to := filepath.Join(dir, ".out.partial-1"), filepath.Join(dir, "out")
	mustWrite(t, filepath.Join(from, "a.png"), "A")
	mustWrite(t, filepath.Join(from, "sub", "b"), "B")
	mustWrite(t, filepath.Join(from, "results.json"), "{}")
	mustWrite(t, filepath.Join(to, "a.png"), "old A")
	mustWrite(t, filepath.Join(to, "keep.txt"), "kept")
	var seen []string
	names := []string{"a.png", "sub", "results.json"}
	if err := MoveInto(from, to, names, func(dst string) { seen = append(seen, dst) }); err != nil {
		t.Fatal(err)
	}
	for i, n := range names {
		if i >= len(seen) || seen[i] != filepath.Join(to, n) {
			t.Errorf("before saw %q, want the destinations of %q in order", seen, names)
			break
		}
	}
	wantFile(t, "moved over a file", filepath.Join(to, "a.png"), "A")
	wantFile(t, "moved directory", filepath.Join(to, "sub", "b"), "B")
	wantFile(t, "moved last", filepath.Join(to, "results.json"), "{}")
	wantFile(t, "left alone", filepath.Join(to, "keep.txt"), "kept")
	if ents, err := os.ReadDir(from); err != nil || len(ents) != 0 {
		t.Errorf("the source after the moves: %v, %v", ents, err)
	}

	// A directory at a destination stops the moves at that entry.
	from2 := filepath.Join(dir, ".out.partial-2")
	mustWrite(t, filepath.Join(from2, "c.png"), "C")
	mustWrite(t, filepath.Join(from2, "sub", "b"), "B2")
	mustWrite(t, filepath.Join(from2, "results.json"), "{2}")
	err := MoveInto(from2, to, []string{"c.png", "sub", "results.json"}, nil)
	if err == nil || !dirExists(err) {
		t.Fatalf("onto an existing directory: error %v, want EEXIST", err)
	}
	wantFile(t, "moved before the failure", filepath.Join(to, "c.png"), "C")
	wantAbsent(t, "moved before the failure", filepath.Join(from2, "c.png"))
	wantFile(t, "the existing directory", filepath.Join(to, "sub", "b"), "B")
	wantFile(t, "the failed entry", filepath.Join(from2, "sub", "b"), "B2")
	wantFile(t, "not moved after the failure", filepath.Join(from2, "results.json"), "{2}")
	wantFile(t, "not replaced after the failure", filepath.Join(to, "results.json"), "{}")
}
