package serve

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors the batcher answers with; the handlers map them to gRPC codes and HTTP statuses.
var (
	ErrQueueFull    = errors.New("server busy: the request queue is full, retry later")
	ErrShuttingDown = errors.New("server shutting down")
)

// BadRequestError is a request the scorer refuses (wrong band count, NaN, …).
type BadRequestError struct{ Err error }

func (e *BadRequestError) Error() string { return e.Err.Error() }
func (e *BadRequestError) Unwrap() error { return e.Err }

type jobResult struct {
	res Result
	err error
}

type job struct {
	ctx   context.Context
	frame *Frame
	enq   time.Time
	done  chan jobResult // buffered: the worker never blocks on an abandoned job
}

// Batcher gathers concurrent requests into one forward of up to MaxBatch frames, waiting at
// most MaxWait after the first; its queue holds at most Queue requests, and a request that
// finds it full fails at once with ErrQueueFull. One worker goroutine owns the scorer.
type Batcher struct {
	sc       *Scorer
	maxBatch int
	maxWait  time.Duration
	q        chan *job
	m        *Metrics
	onResult func(*Frame, *Result)

	mu     sync.RWMutex
	closed bool
	done   chan struct{}

	arriving atomic.Int64  // requests being received (see Arrive)
	wake     chan struct{} // a signal when arriving drops to 0
}

// Arrival marks a request that is being received and decoded. While any is, a batch that
// is not full waits (up to MaxWait) for it; with none on its way a batch goes at once, so
// a lone client never waits MaxWait for company that is not coming.
type Arrival struct {
	b    *Batcher
	done atomic.Bool
}

// Arrive notes a request on its way; call Done (or pass it to Submit) when it is queued
// or refused.
func (b *Batcher) Arrive() *Arrival {
	b.arriving.Add(1)
	return &Arrival{b: b}
}

// Done ends the arrival; only the first call counts.
func (a *Arrival) Done() {
	if a == nil || !a.done.CompareAndSwap(false, true) {
		return
	}
	if a.b.arriving.Add(-1) == 0 {
		select {
		case a.b.wake <- struct{}{}:
		default:
		}
	}
}

// NewBatcher starts the worker.
func NewBatcher(sc *Scorer, maxBatch int, maxWait time.Duration, queue int, m *Metrics, onResult func(*Frame, *Result)) (*Batcher, error) {
	if maxBatch < 1 {
		return nil, fmt.Errorf("--max-batch %d: must be ≥ 1", maxBatch)
	}
	if queue < 1 {
		return nil, fmt.Errorf("--queue %d: must be ≥ 1", queue)
	}
	if maxWait < 0 {
		return nil, fmt.Errorf("--max-wait %v: must be ≥ 0", maxWait)
	}
	b := &Batcher{sc: sc, maxBatch: maxBatch, maxWait: maxWait, q: make(chan *job, queue), m: m, onResult: onResult, done: make(chan struct{}), wake: make(chan struct{}, 1)}
	go b.loop()
	return b, nil
}

// QueueDepth is the number of requests waiting.
func (b *Batcher) QueueDepth() int { return len(b.q) }

// Submit queues a frame and waits for its result or ctx's end. A frame the scorer refuses
// comes back as a *BadRequestError before it is queued. Submit takes the frame's pooled
// bytes over (they go back to the pool once the frame is scored or refused).
func (b *Batcher) Submit(ctx context.Context, f *Frame) (Result, error) {
	return b.submit(ctx, f, nil)
}

// submit is Submit that also ends a (the frame's arrival, may be nil) once the frame is
// queued or refused.
func (b *Batcher) submit(ctx context.Context, f *Frame, a *Arrival) (Result, error) {
	defer a.Done()
	if err := b.sc.Check(f); err != nil {
		f.release()
		return Result{}, &BadRequestError{err}
	}
	if err := ctx.Err(); err != nil {
		f.release()
		return Result{}, err
	}
	j := &job{ctx: ctx, frame: f, enq: time.Now(), done: make(chan jobResult, 1)}
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		f.release()
		return Result{}, ErrShuttingDown
	}
	select {
	case b.q <- j:
	default:
		b.mu.RUnlock()
		f.release()
		return Result{}, ErrQueueFull
	}
	b.mu.RUnlock()
	a.Done()
	select {
	case r := <-j.done:
		return r.res, r.err
	case <-ctx.Done():
		// the worker sees the cancelled context and skips the job (and releases the frame)
		return Result{}, ctx.Err()
	}
}

// Close stops accepting requests, lets the worker answer every queued one, and waits for
// it until ctx ends.
func (b *Batcher) Close(ctx context.Context) error {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.q)
	}
	b.mu.Unlock()
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("batcher: %d queued requests not drained: %w", len(b.q), ctx.Err())
	}
}

func (b *Batcher) loop() {
	defer close(b.done)
	batch := make([]*job, 0, b.maxBatch)
	for {
		j, ok := <-b.q
		if !ok {
			return
		}
		batch = append(batch[:0], j)
		open := true
		var timer *time.Timer
		var expired <-chan time.Time
	collect:
		for len(batch) < b.maxBatch {
			select { // whatever is queued joins at once
			case j2, ok := <-b.q:
				if !ok {
					open = false
					break collect
				}
				batch = append(batch, j2)
				continue
			default:
			}
			if b.maxWait <= 0 || b.arriving.Load() == 0 {
				break // nothing else on its way: go now
			}
			if timer == nil {
				timer = time.NewTimer(b.maxWait)
				expired = timer.C
			}
			select {
			case j2, ok := <-b.q:
				if !ok {
					open = false
					break collect
				}
				batch = append(batch, j2)
			case <-b.wake: // the last arrival was queued or refused: look again
			case <-expired:
				break collect
			}
		}
		if timer != nil {
			timer.Stop()
		}
		b.run(batch)
		if !open {
			return
		}
	}
}

type shapeKey struct {
	h, w, c int
	wl      string // the wavelengths' bytes; "" = the run's own
}

// wlKey keys frames by their wavelengths' values, so that frames with equal wavelengths
// (or the run's own) share a forward.
func (b *Batcher) wlKey(wl []float32) string {
	if len(wl) == 0 || slices.Equal(wl, b.sc.Wavelengths) {
		return ""
	}
	k := make([]byte, 4*len(wl))
	for i, v := range wl {
		binary.LittleEndian.PutUint32(k[4*i:], math.Float32bits(v))
	}
	return string(k)
}

func (b *Batcher) run(batch []*job) {
	groups := map[shapeKey][]*job{}
	var order []shapeKey
	now := time.Now()
	for _, j := range batch {
		b.m.stage("queue", now.Sub(j.enq))
		if err := j.ctx.Err(); err != nil {
			j.frame.release()
			j.done <- jobResult{err: err} // counted by Server.Score
			continue
		}
		k := shapeKey{j.frame.H, j.frame.W, j.frame.C, b.wlKey(j.frame.Wavelengths)}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], j)
	}
	for _, k := range order {
		g := groups[k]
		frames := make([]*Frame, len(g))
		for i, j := range g {
			frames[i] = j.frame
		}
		t0 := time.Now()
		res, err := b.sc.Score(frames)
		b.m.stage("forward", time.Since(t0))
		b.m.batch(len(frames))
		if err != nil && len(frames) > 1 {
			// one frame's failure must not fail the others: score them one by one
			for _, j := range g {
				r, err := b.sc.Score([]*Frame{j.frame})
				j.frame.release()
				if err != nil {
					j.done <- jobResult{err: err}
					continue
				}
				b.deliver(j, r[0])
			}
			continue
		}
		for i, j := range g {
			j.frame.release()
			if err != nil {
				j.done <- jobResult{err: err}
				continue
			}
			b.deliver(j, res[i])
		}
	}
}

func (b *Batcher) deliver(j *job, r Result) {
	if b.onResult != nil {
		b.onResult(j.frame, &r)
	}
	j.done <- jobResult{res: r}
}

func causeOf(err error) string {
	var br *BadRequestError
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrQueueFull):
		return "queue_full"
	case errors.Is(err, ErrShuttingDown):
		return "shutting_down"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &br):
		return "bad_request"
	}
	return "internal"
}
