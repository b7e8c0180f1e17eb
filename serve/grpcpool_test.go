package serve

import (
	"math/rand"
	"testing"
	"time"
)

// TestDirtyPool: every buffer the gRPC pool hands out has the asked length and room for
// it, whatever was put back before (buffers of every capacity, ours or not), and up to
// 1 MiB a power-of-two capacity (its class).
func TestDirtyPool(t *testing.T) {
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	p := &dirtyPool{}
	for range 2000 {
		if rng.Intn(2) == 0 {
			b := make([]byte, rng.Intn(1<<21))
			p.Put(&b)
			continue
		}
		n := rng.Intn(1 << 21)
		if rng.Intn(4) == 0 {
			n = 1 << rng.Intn(22)
		}
		b := p.Get(n)
		if len(*b) != n || cap(*b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		if n <= 1<<20 && n > 0 && cap(*b)&(cap(*b)-1) != 0 {
			t.Fatalf("Get(%d): capacity %d is not a power of two", n, cap(*b))
		}
		if rng.Intn(2) == 0 {
			p.Put(b)
		}
	}
}
