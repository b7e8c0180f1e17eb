package serve

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// The in-flight byte budget (--max-inflight-mb, #25 item 7). Every request reserves the
// memory it will hold (its body, the decoded cube, a converted copy) before that memory is
// read or allocated, and keeps it until it has been answered, queued and scored included. A
// request whose reservation does not fit beside the others is answered 503 (gRPC
// RESOURCE_EXHAUSTED) at once, before its body is read; one that could never fit (larger
// than the whole budget) 413. So, whatever clients send, the requests hold at most the
// budget; the server's RSS stays within idle + budget + one batch's staging (the
// staging tensor and the forward's activations, in LibTorch). With a Content-Length the
// whole estimate is reserved up front; a chunked body grows its reservation as its bytes
// are read (budgetReader). When the budget empties after a burst, the memory is given back
// to the system (debug.FreeOSMemory).

// budget counts the bytes reserved by requests in flight.
type budget struct {
	max int64

	mu   sync.Mutex
	used int64
	high int64 // the most used since the memory was last given back

	freeing atomic.Bool
	peak    atomic.Int64 // the most ever used (tests, metrics)
	freed   atomic.Int64 // times the memory was given back
}

func newBudget(max int64) *budget { return &budget{max: max} }

// errBusy: a reservation does not fit beside those in flight (HTTP 503, gRPC RESOURCE_EXHAUSTED).
type errBusy struct{ need, used, max int64 }

func (e *errBusy) Error() string {
	return fmt.Sprintf("busy: this request needs %d MiB of memory and %d of the %d MiB of --max-inflight-mb are held by requests in flight; retry later",
		mibUp(e.need), mibUp(e.used), e.max>>20)
}

// errNeverFits: a reservation larger than the whole budget (HTTP 413, gRPC RESOURCE_EXHAUSTED).
type errNeverFits struct{ need, max int64 }

func (e *errNeverFits) Error() string {
	return fmt.Sprintf("this request needs %d MiB of memory to be read and decoded, larger than the maximum of %d MiB (--max-inflight-mb); send the cube as .npy (float32) or raise --max-inflight-mb",
		mibUp(e.need), e.max>>20)
}

func mibUp(n int64) int64 { return (n + 1<<20 - 1) >> 20 }

// take reserves n more bytes beside the others, or says why not.
func (b *budget) take(n int64, have int64) error {
	if n <= 0 {
		return nil
	}
	if have+n > b.max {
		return &errNeverFits{have + n, b.max}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return &errBusy{have + n, b.used, b.max}
	}
	b.used += n
	b.high = max(b.high, b.used)
	if b.used > b.peak.Load() {
		b.peak.Store(b.used)
	}
	return nil
}

// freeAfter: the most used since the last give-back above which an empty budget gives the
// memory back to the system.
const freeAfter = 64 << 20

func (b *budget) give(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	idle := b.used == 0 && b.high >= freeAfter
	if idle {
		b.high = 0
	}
	b.mu.Unlock()
	if idle && b.freeing.CompareAndSwap(false, true) {
		go func() {
			defer b.freeing.Store(false)
			// a short wait lets the last answers be written (their buffers become garbage)
			time.Sleep(50 * time.Millisecond)
			b.mu.Lock()
			still := b.used == 0
			b.mu.Unlock()
			if still {
				// two collections: pooled request buffers (bufPool) survive the first
				// in sync.Pool's victim cache
				runtime.GC()
				debug.FreeOSMemory()
				b.freed.Add(1)
			}
		}()
	}
}

// reservation is one request's share of the budget.
type reservation struct {
	b *budget
	n int64
}

func (b *budget) reserve() *reservation { return &reservation{b: b} }

// need grows the reservation to at least total bytes.
func (r *reservation) need(total int64) error {
	if r == nil || r.b == nil || total <= r.n {
		return nil
	}
	if err := r.b.take(total-r.n, r.n); err != nil {
		return err
	}
	r.n = total
	return nil
}

// release gives the whole reservation back (once).
func (r *reservation) release() {
	if r == nil || r.b == nil {
		return
	}
	r.b.give(r.n)
	r.n = 0
}

// budgetReader counts a body's bytes as they are read and grows the reservation to cover
// them (plus extra bytes per byte read: a decoded copy still to come), so that a body
// without a Content-Length is bounded by the budget too.
type budgetReader struct {
	r    io.Reader
	res  *reservation
	read int64
	err  error
}

func (br *budgetReader) Read(p []byte) (int, error) {
	if br.err != nil {
		return 0, br.err
	}
	// reserve before reading, in steps of at least 1 MiB (few calls into the budget)
	if br.read+int64(len(p)) > br.res.n {
		if err := br.res.need(max(br.read+int64(len(p)), br.res.n+1<<20)); err != nil {
			// take what fits: the remainder of the reservation
			if br.res.n <= br.read {
				br.err = err
				return 0, err
			}
			p = p[:br.res.n-br.read]
		}
	}
	n, err := br.r.Read(p)
	br.read += int64(n)
	return n, err
}

// budgetError says whether err is the budget's, and which status it is.
func budgetError(err error) (busy, never bool) {
	var b *errBusy
	var nf *errNeverFits
	return errors.As(err, &b), errors.As(err, &nf)
}
