package torch

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestLoadTensorsChecksTheCentralDirectory: a tensor file whose size its zip central
// directory does not account for (holes or data before or after a good archive, zeros only)
// or that is not a regular file is refused with an error naming it, from the archive's end
// and directory alone (#25 item 6); a good archive with fresh random tensors loads exactly.
func TestLoadTensorsChecksTheCentralDirectory(t *testing.T) {
	dir := t.TempDir()
	seed := rand.Uint64()
	s := newScope(t)
	want := diskFullTensors(seed)
	m := map[string]*Tensor{}
	for k, v := range want {
		m[k] = FromSlice(s, CPU, v, int64(len(v)))
	}
	good := filepath.Join(dir, "good.pt")
	if err := SaveTensors(good, m); err != nil {
		t.Fatal(err)
	}
	gb, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	const hole = 512 << 20
	cases := []struct {
		name, want string
		mk         func(p string) error
	}{
		{"zeros", "not a PyTorch tensor archive", func(p string) error {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return err
			}
			return os.Truncate(p, hole)
		}},
		{"holes-after", "not a PyTorch tensor archive", func(p string) error {
			if err := os.WriteFile(p, gb, 0o644); err != nil {
				return err
			}
			return os.Truncate(p, hole)
		}},
		{"holes-before", "", func(p string) error {
			f, err := os.Create(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(gb, hole)
			return err
		}},
		{"hole-before-directory", "central directory accounts for", func(p string) error { return writeWithHole(p, gb, hole) }},
		{"fifo", "not a regular file", func(p string) error { return mkfifo(p) }},
	}
	for _, c := range cases {
		p := filepath.Join(dir, c.name+".pt")
		if err := c.mk(p); err != nil {
			t.Fatal(err)
		}
		got, err := LoadTensors(p, CPU)
		if err == nil {
			FreeAll(got)
			t.Errorf("%s: loaded", c.name)
			continue
		}
		said := strings.Contains(err.Error(), c.want)
		if c.want == "" { // refused by the zip reader or by the accounting
			said = strings.Contains(err.Error(), "not a PyTorch tensor archive") || strings.Contains(err.Error(), "central directory accounts for")
		}
		if !strings.Contains(err.Error(), p) || !said {
			t.Errorf("%s: %v (want an error naming %s that says %q)", c.name, err, p, c.want)
		}
	}
	got, err := LoadTensors(good, CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer FreeAll(got)
	for k, v := range want {
		g, err := got[k].Float32s()
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			if g[i] != v[i] {
				t.Fatalf("%s[%d]: %v, saved %v", k, i, g[i], v[i])
			}
		}
	}
}

// writeWithHole writes the zip archive b to p with a hole of n bytes before its central
// directory, the end records' offsets moved to match: a valid zip whose directory accounts
// for far less than the file.
func writeWithHole(p string, b []byte, n int64) error {
	b = append([]byte(nil), b...)
	le := binary.LittleEndian
	e := bytes.LastIndex(b, []byte{0x50, 0x4b, 0x05, 0x06})
	if e < 0 {
		return fmt.Errorf("no end of central directory")
	}
	cd := int64(le.Uint32(b[e+16:]))
	if l := e - 20; l >= 0 && le.Uint32(b[l:]) == 0x07064b50 {
		z := int64(le.Uint64(b[l+8:]))
		le.PutUint64(b[l+8:], uint64(z+n))
		cd = int64(le.Uint64(b[z+48:]))
		le.PutUint64(b[z+48:], uint64(cd+n))
	}
	if le.Uint32(b[e+16:]) != 0xffffffff {
		le.PutUint32(b[e+16:], uint32(cd+n))
	}
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(b[:cd], 0); err != nil {
		return err
	}
	_, err = f.WriteAt(b[cd:], cd+n)
	return err
}

func mkfifo(p string) error { return syscall.Mkfifo(p, 0o644) }
