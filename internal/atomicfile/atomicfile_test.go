package atomicfile

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/spectraclip/spectraclip/internal/testfs"
)

func TestWriteFileContentAndPerm(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		perm os.FileMode
		data []byte
	}{{0o644, []byte("first\n")}, {0o600, []byte("second, longer\n")}, {0o755, nil}} {
		p := filepath.Join(dir, "f.txt")
		if err := WriteFile(p, c.data, c.perm); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, c.data) {
			t.Errorf("perm %o: read %q, wrote %q", c.perm, b, c.data)
		}
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != c.perm {
			t.Errorf("mode %o, want %o", st.Mode().Perm(), c.perm)
		}
		testfs.NoTempFiles(t, fmt.Sprintf("perm %o", c.perm), dir)
	}
}

func TestWriteCallbackFailsKeepsPrevious(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	old := []byte(`{"old":true}`)
	if err := os.WriteFile(p, old, 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := Write(p, 0o644, func(w io.Writer) error {
		if _, err := w.Write([]byte(`{"new":`)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want the callback's", err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, old) {
		t.Errorf("the previous file changed: %q", b)
	}
	testfs.NoTempFiles(t, "callback failed", dir)
	// A target in a missing directory fails without creating anything.
	if err := WriteFile(filepath.Join(dir, "no", "such"), old, 0o644); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
}

// TestWriteFileDiskFull: on a real full tmpfs (nothing free, a few KB, most of the file)
// the error says the disk is full and names the target, wraps ENOSPC, the previous file
// stays and no temporary file is left; after freeing space the write succeeds.
func TestWriteFileDiskFull(t *testing.T) {
	dir := testfs.MountTmpfs(t, 256)
	target := filepath.Join(dir, "metrics.json")
	old := []byte("previous\n")
	if err := os.WriteFile(target, old, 0o644); err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 64<<10)
	_, _ = rand.Read(data)
	for _, leave := range []int64{0, 4 << 10, 12 << 10, 40 << 10} {
		testfs.FillTo(t, dir, leave)
		for _, streaming := range []bool{false, true} {
			var err error
			if streaming {
				err = Write(target, 0o644, func(w io.Writer) error {
					for i := 0; i < len(data); i += 1000 {
						if _, err := w.Write(data[i:min(i+1000, len(data))]); err != nil {
							return err
						}
					}
					return nil
				})
			} else {
				err = WriteFile(target, data, 0o644)
			}
			when := fmt.Sprintf("%d bytes free, streaming %v", leave, streaming)
			testfs.CheckFullDiskWrite(t, when, err, target, old)
			if !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("%s: the error does not wrap ENOSPC: %v", when, err)
			}
		}
	}
	os.Remove(filepath.Join(dir, "filler"))
	if err := WriteFile(target, data, 0o644); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	if b, _ := os.ReadFile(target); !bytes.Equal(b, data) {
		t.Fatal("after freeing space: the file differs from what was written")
	}
}

// TestReaderNeverSeesPartialFile: while a writer rewrites the target many times with
// versions of different sizes, a reader reading it in a loop only ever sees one of the
// complete versions.
func TestReaderNeverSeesPartialFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "weights.bin")
	versions := make([][]byte, 8)
	for i := range versions {
		versions[i] = bytes.Repeat([]byte{byte('a' + i)}, (i+1)*37<<10)
	}
	if err := WriteFile(p, versions[0], 0o644); err != nil {
		t.Fatal(err)
	}
	var done atomic.Bool
	var reads, bad atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !done.Load() {
			b, err := os.ReadFile(p)
			if err != nil {
				bad.Add(1)
				t.Errorf("read: %v", err)
				return
			}
			reads.Add(1)
			ok := false
			for _, v := range versions {
				if bytes.Equal(b, v) {
					ok = true
					break
				}
			}
			if !ok {
				bad.Add(1)
				t.Errorf("read %d bytes that are none of the versions", len(b))
				return
			}
		}
	}()
	for i := 0; i < 400 && bad.Load() == 0; i++ {
		v := versions[i%len(versions)]
		if err := Write(p, 0o644, func(w io.Writer) error {
			// Write in pieces so that a non-atomic writer would show partial files.
			for j := 0; j < len(v); j += 4096 {
				if _, err := w.Write(v[j:min(j+4096, len(v))]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("the reader read nothing")
	}
	testfs.NoTempFiles(t, "after the rewrites", dir)
	t.Logf("%d reads", reads.Load())
}

// TestWriteVia: a writer given the temporary file's name puts its content into place with
// the mode asked for; when it fails (after writing part) the previous file stays and no
// temporary file is left.
func TestWriteVia(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "model.pt")
	old := []byte("previous archive")
	if err := os.WriteFile(p, old, 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("save failed")
	err := WriteVia(p, 0o644, func(tmp string) error {
		if filepath.Dir(tmp) != dir || tmp == p {
			t.Errorf("temporary name %s is not beside %s", tmp, p)
		}
		if err := os.WriteFile(tmp, []byte("part"), 0o666); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want the writer's", err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, old) {
		t.Errorf("the previous file changed: %q", b)
	}
	testfs.NoTempFiles(t, "writer failed", dir)
	want := []byte("new archive, complete")
	if err := WriteVia(p, 0o600, func(tmp string) error { return os.WriteFile(tmp, want, 0o666) }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, want) {
		t.Errorf("read %q, want %q", b, want)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 600", st.Mode().Perm())
	}
	testfs.NoTempFiles(t, "after the write", dir)
}
