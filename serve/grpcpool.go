package serve

import (
	"math/bits"
	"sync"
)

// dirtyPool is the gRPC server's buffer pool (experimental.BufferPool): buffers by powers
// of two up to 1 MiB, handed out without clearing. gRPC fills every buffer it takes before
// reading it (a received frame's payload, a message being marshalled); its default pool
// clears each one on Get, which for a 256×256×61 cube arriving in 16 KiB HTTP/2 frames is
// 16 MB of zeroing per request.
type dirtyPool struct {
	classes [21]sync.Pool // class c holds buffers of capacity 1<<c
}

func (p *dirtyPool) Get(n int) *[]byte {
	c := 0
	if n > 1 {
		c = bits.Len(uint(n - 1))
	}
	if c >= len(p.classes) {
		b := make([]byte, n)
		return &b
	}
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	n := cap(*b)
	c := bits.Len(uint(n)) - 1
	if n == 0 || n != 1<<c || c >= len(p.classes) {
		return // not one of ours
	}
	p.classes[c].Put(b)
}
