package serve

import (
	"context"
	"math"
	"math/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFirstUnusable: the word-wise scan agrees with a value-by-value definition (NaN,
// ±Inf, |v| ≥ 2^50) at every alignment.
func TestFirstUnusable(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 3e38, -3e38, MaxAbsValue, -MaxAbsValue, math.Nextafter32(MaxAbsValue, 0), 1e15, 65535, 0, -1}
	for trial := 0; trial < 3000; trial++ {
		v := make([]float32, 1+rng.Intn(70))
		for i := range v {
			v[i] = rng.Float32()
		}
		if rng.Intn(4) > 0 {
			v[rng.Intn(len(v))] = specials[rng.Intn(len(specials))]
		}
		off := rng.Intn(2)
		if off > len(v)-1 {
			off = 0
		}
		s := v[off:]
		want := -1
		for i, x := range s {
			if f := float64(x); math.IsNaN(f) || math.Abs(f) >= MaxAbsValue {
				want = i
				break
			}
		}
		if got := firstUnusable(s); got != want {
			t.Fatalf("%v: firstUnusable %d, want %d", s, got, want)
		}
	}
}

// TestHugeFiniteValues (#25 item 10): a finite cube holding 3e38 gave HTTP 500 ("anomaly
// scores are NaN or infinite (the inputs were finite)"): the pipeline overflowed float32.
// It is refused up front, 422 / INVALID_ARGUMENT, naming the value, its place and the
// reason; values up to 1e14 are scored.
func TestHugeFiniteValues(t *testing.T) {
	s, base, gaddr := startServer(t, Options{})
	bands := s.Scorer().Bands
	rng := rand.New(rand.NewSource(2))
	for _, v := range []float32{3e38, -3e38, 2e15} {
		f := randomFrame(rng, 32, 32, bands)
		row, col, band := rng.Intn(32), rng.Intn(32), rng.Intn(bands)
		f.Data[(row*32+col)*bands+band] = v
		resp, msg := post(t, base+"/v1/score", npyBytes(t, f))
		if resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(msg), "too large") {
			t.Errorf("%g over HTTP: %d %s", v, resp.StatusCode, msg)
		}
		g := dialGRPC(t, gaddr)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := g.Score(ctx, cubeOf(f), false)
		cancel()
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "too large") {
			t.Errorf("%g over gRPC: %v", v, err)
		}
	}
	// a cube of 3e38 values (the issue's): 500 before, from NaN scores
	all := randomFrame(rng, 32, 32, bands)
	for i := range all.Data {
		all.Data[i] = 3e38
	}
	if resp, msg := post(t, base+"/v1/score", npyBytes(t, all)); resp.StatusCode != http.StatusUnprocessableEntity || !strings.Contains(string(msg), "row 0, column 0, band 0 is too large") {
		t.Errorf("a cube of 3e38: %d %s", resp.StatusCode, msg)
	}
	// every value large: scored as long as they are under the bound
	f := randomFrame(rng, 32, 32, bands)
	for i := range f.Data {
		f.Data[i] *= 1e14
	}
	if resp, msg := post(t, base+"/v1/score", npyBytes(t, f)); resp.StatusCode != 200 {
		t.Errorf("values up to 1e14: %d %s", resp.StatusCode, msg)
	}
}
