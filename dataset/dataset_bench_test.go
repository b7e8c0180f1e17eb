package dataset

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"codeberg.org/sbinet/npyio"
)

// benchCube is 256×256×61 float32 (16 MiB), a cube of the synthetic band count.
func benchCube() *Cube {
	const H, W, C = 256, 256, 61
	c := &Cube{H: H, W: W, C: C, Data: make([]float32, H*W*C)}
	r := rand.New(rand.NewPCG(1, 1))
	for i := range c.Data {
		c.Data[i] = float32(r.Float64() * 1000)
	}
	return c
}

func BenchmarkReadENVI(b *testing.B) {
	dir := b.TempDir()
	c := benchCube()
	for _, tc := range []struct {
		name string
		dt   ENVIDataType
		il   string
	}{{"float32-bip", ENVIFloat32, "bip"}, {"float32-bsq", ENVIFloat32, "bsq"}, {"float32-bil", ENVIFloat32, "bil"}, {"uint16-bip", ENVIUint16, "bip"}} {
		base := filepath.Join(dir, tc.name)
		if err := WriteENVI(base, c, ENVIWriteOptions{DataType: tc.dt, Interleave: tc.il}); err != nil {
			b.Fatal(err)
		}
		st, _ := os.Stat(base + ".img")
		b.Run("os.ReadFile/"+tc.name, func(b *testing.B) {
			b.SetBytes(st.Size())
			for b.Loop() {
				if _, err := os.ReadFile(base + ".img"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("ReadENVI/"+tc.name, func(b *testing.B) {
			b.SetBytes(st.Size())
			for b.Loop() {
				if _, err := ReadENVI(base + ".hdr"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadNPY(b *testing.B) {
	c := benchCube()
	var buf bytes.Buffer
	if err := npyio.Write(&buf, c.Data); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "cube.npy")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	size := int64(buf.Len())
	b.Run("os.ReadFile", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := os.ReadFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ReadNPY", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := ReadNPY(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	// npyio's own element-by-element decoding, for comparison (from memory: on an unbuffered
	// *os.File it makes one read call per element and is slower still).
	b.Run("npyio.Read", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			raw, err := os.ReadFile(path)
			if err != nil {
				b.Fatal(err)
			}
			var v []float32
			if err := npyio.Read(bytes.NewReader(raw), &v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkGenerateSyntheticDefault(b *testing.B) {
	dir := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		if err := GenerateSynthetic(filepath.Join(dir, "set", string(rune('a'+i%26))+string(rune('a'+i/26%26))), DefaultSynthConfig()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoaderEpoch streams the default synthetic train split (8 frames, batch 2) from
// disk with background prefetch.
func BenchmarkLoaderEpoch(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "set")
	if err := GenerateSynthetic(dir, DefaultSynthConfig()); err != nil {
		b.Fatal(err)
	}
	d, err := Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	l, err := d.NewLoader("train", LoaderOptions{BatchSize: 2})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(8 * 128 * 128 * 61 * 4))
	epoch := 0
	for b.Loop() {
		it := l.Epoch(context.Background(), epoch)
		for {
			if _, err := it.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		it.Close()
		epoch++
	}
}
