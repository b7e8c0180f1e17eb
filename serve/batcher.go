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

	"github.com/spectraclip/spectraclip/torch"
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

	// a frame whose values are elsewhere (transport pieces, a shared-memory file) is copied
	// into its row by a goroutine of its own (in parallel with the gatherer and the other
	// frames), which sends on copied the index of the first NaN/Inf it found (-1: none) or
	// why it could not read them; settle waits for it into bad and badErr
	copied chan stageResult
	bad    int
	badErr error
}

type stageResult struct {
	bad int
	err error
}

// settle waits for the copies of the batch's frames still being made.
func (sb *staged) settle() {
	for _, j := range sb.jobs {
		if j.copied != nil {
			r := <-j.copied
			j.bad, j.badErr = r.bad, r.err
			j.copied = nil
		}
	}
}

// Batcher gathers concurrent requests into one forward of up to MaxBatch frames, waiting at
// most MaxWait after the first; its queue holds at most Queue requests, and a request that
// finds it full fails at once with ErrQueueFull. Each forward stage owns its scorer.
type Batcher struct {
	sc       *Scorer   // the first worker's (band count, wavelengths)
	workers  []*Scorer // one forward stage each
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

	free   chan *slot   // staging slots the gatherer may fill
	staged chan *staged // the gathered batch the forward stage takes next
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

// NewBatcher starts the gatherer and one forward stage on sc.
func NewBatcher(sc *Scorer, maxBatch int, maxWait time.Duration, queue int, m *Metrics, onResult func(*Frame, *Result)) (*Batcher, error) {
	return NewBatcherWorkers([]*Scorer{sc}, maxBatch, maxWait, queue, m, onResult)
}

// NewBatcherWorkers starts the gatherer and one forward stage per scorer (each a copy of
// the same run's pipeline): batches go to whichever stage is free, so that on the CPU
// several batches run at once, each on its share of the threads.
func NewBatcherWorkers(workers []*Scorer, maxBatch int, maxWait time.Duration, queue int, m *Metrics, onResult func(*Frame, *Result)) (*Batcher, error) {
	if len(workers) == 0 {
		return nil, fmt.Errorf("batcher: no scorer")
	}
	if maxBatch < 1 {
		return nil, fmt.Errorf("--max-batch %d: must be ≥ 1", maxBatch)
	}
	if queue < 1 {
		return nil, fmt.Errorf("--queue %d: must be ≥ 1", queue)
	}
	if maxWait < 0 {
		return nil, fmt.Errorf("--max-wait %v: must be ≥ 0", maxWait)
	}
	slots := len(workers) + 1 // one per forward stage, and one being gathered
	b := &Batcher{sc: workers[0], workers: workers, maxBatch: maxBatch, maxWait: maxWait, q: make(chan *job, queue), m: m, onResult: onResult, done: make(chan struct{}), wake: make(chan struct{}, 1),
		free: make(chan *slot, slots), staged: make(chan *staged)}
	for range slots {
		b.free <- &slot{}
	}
	go b.loop()
	var wg sync.WaitGroup
	for w, sc := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.forwardLoop(w, sc)
		}()
	}
	go func() {
		wg.Wait()
		for range slots { // every slot is back: the gatherer has stopped
			(<-b.free).close()
		}
		close(b.done)
	}()
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

// The batcher runs as two stages joined by a hand-off, so that gathering and copying the
// next batch overlaps the forward pass of the current one:
//
//   - the gatherer (loop) takes requests off the queue and copies each frame into a row of
//     a staging tensor as it joins the batch (the request's bytes go back to the pool at
//     once; a gRPC frame still in the transport's buffers is copied by a goroutine of its
//     own). When the batch is ready to go (full, or nothing else on its way, or MaxWait
//     passed) and every forward stage is still busy, it keeps adding queued frames until a
//     forward stage takes it;
//   - a forward stage (forwardLoop) waits for its batch's copies, runs the pipeline on the
//     staging tensor's rows and answers every request of the batch.
//
// There may be several forward stages (workers), each with its own copy of the pipeline.
// One staging slot per forward stage and one more circulate between them, so the steady
// state holds that many batches' worth of frames in staging memory, reused batch after
// batch.

// slot is a staging tensor [cap, H, W, C] (float32, on the CPU) that batches are copied
// into, with a Go view of its values; keep owns the tensor.
type slot struct {
	keep    *torch.Scope
	cube    *torch.Tensor
	view    []float32
	h, w, c int
	cap     int
}

// ensure makes the slot hold at least n frames of h×w×c, keeping its first rows rows
// (frames already gathered). It grows by doubling up to maxN, so that the staging memory
// follows the batches that come instead of the largest the flags allow.
func (sl *slot) ensure(h, w, c, n, rows, maxN int) error {
	same := sl.cube != nil && sl.h == h && sl.w == w && sl.c == c
	if same && sl.cap >= n {
		return nil
	}
	capN := n
	if same {
		capN = min(max(2*sl.cap, n), maxN)
	} else {
		rows = 0
	}
	keep := torch.NewScope()
	t := keep.Empty([]int64{int64(capN), int64(h), int64(w), int64(c)}, torch.Float32, torch.CPU)
	if err := keep.Err(); err != nil {
		keep.Close()
		return fmt.Errorf("staging tensor for %d frames of %d×%d×%d: %w", capN, h, w, c, err)
	}
	v, err := torch.CPUView[float32](t)
	if err != nil {
		keep.Close()
		return err
	}
	copy(v, sl.view[:rows*h*w*c])
	sl.close()
	sl.keep, sl.cube, sl.view, sl.h, sl.w, sl.c, sl.cap = keep, t, v, h, w, c, capN
	return nil
}

// close frees the staging tensor.
func (sl *slot) close() {
	if sl.keep != nil {
		sl.keep.Close()
	}
	sl.keep, sl.cube, sl.view, sl.cap = nil, nil, nil, 0
}

// row is frame i's values in the slot.
func (sl *slot) row(i int) []float32 {
	n := sl.h * sl.w * sl.c
	return sl.view[i*n : (i+1)*n : (i+1)*n]
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

// staged is a batch being gathered into a slot: its jobs' frames are the slot's first
// len(jobs) rows.
type staged struct {
	slot *slot
	key  shapeKey
	wl   []float32 // the frames' wavelengths (nil: the run's own)
	jobs []*job
}

// add copies j's frame into the next row and gives its bytes back. A job whose context
// has ended is answered instead. It reports false, taking nothing, when j's frame does not
// fit this batch (another shape or other wavelengths).
func (b *Batcher) add(sb *staged, j *job) (bool, error) {
	if err := j.ctx.Err(); err != nil {
		j.frame.release()
		j.done <- jobResult{err: err} // counted by Server.Score
		return true, nil
	}
	f := j.frame
	k := shapeKey{f.H, f.W, f.C, b.wlKey(f.Wavelengths)}
	if len(sb.jobs) == 0 {
		sb.key, sb.wl = k, f.Wavelengths
	} else if k != sb.key {
		return false, nil
	}
	if sb.slot.cap < len(sb.jobs)+1 {
		sb.settle() // the rows move to a larger tensor: their copies must be done
	}
	if err := sb.slot.ensure(f.H, f.W, f.C, len(sb.jobs)+1, len(sb.jobs), b.maxBatch); err != nil {
		return true, err
	}
	row := sb.slot.row(len(sb.jobs))
	j.bad = -1
	if f.staged() {
		// checked for NaN/Inf as they are copied (Scorer.Check left them), off this goroutine
		j.copied = make(chan stageResult, 1)
		go func() {
			t0 := time.Now()
			bad, err := f.stage(row)
			b.m.stage("copy", time.Since(t0))
			j.copied <- stageResult{bad, err}
		}()
	} else {
		t0 := time.Now()
		copy(row, f.Data)
		b.m.stage("copy", time.Since(t0))
		f.release()
	}
	sb.jobs = append(sb.jobs, j)
	return true, nil
}

func (b *Batcher) loop() {
	defer close(b.staged)
	var carry *job // a request that did not fit the last batch: it starts the next
	open := true
	for open || carry != nil {
		j := carry
		carry = nil
		if j == nil {
			var ok bool
			if j, ok = <-b.q; !ok {
				return
			}
		}
		sb := &staged{slot: <-b.free}
		// put tries j in the batch; a frame that does not fit waits for the next one
		put := func(j *job) {
			fits, err := b.add(sb, j)
			if err != nil {
				j.frame.release()
				j.done <- jobResult{err: err}
			} else if !fits {
				carry = j
			}
		}
		put(j)
		var timer *time.Timer
		var expired <-chan time.Time
	collect:
		for len(sb.jobs) < b.maxBatch && carry == nil {
			select { // whatever is queued joins at once
			case j2, ok := <-b.q:
				if !ok {
					open = false
					break collect
				}
				put(j2)
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
				put(j2)
			case <-b.wake: // the last arrival was queued or refused: look again
			case <-expired:
				break collect
			}
		}
		if timer != nil {
			timer.Stop()
		}
		if len(sb.jobs) == 0 { // every request of it was refused or ended: nothing to run
			b.free <- sb.slot
			continue
		}
		// ready; while every forward stage is busy, what is queued still joins
		sent := false
		for !sent && len(sb.jobs) < b.maxBatch && carry == nil && open {
			select {
			case b.staged <- sb:
				sent = true
			case j2, ok := <-b.q:
				if ok {
					put(j2)
				} else {
					open = false
				}
			}
		}
		if !sent {
			b.staged <- sb
		}
	}
}

// forwardLoop is forward stage w: it scores staged batches on sc and gives their slots back.
func (b *Batcher) forwardLoop(w int, sc *Scorer) {
	for sb := range b.staged {
		b.run(w, sc, sb)
		b.free <- sb.slot
	}
}

// run scores the staged batch. Requests whose context ended while it was gathered are
// answered and their rows closed up; a failed forward of several frames is retried frame
// by frame, so that one frame's failure does not fail the others.
func (b *Batcher) run(w int, sc *Scorer, sb *staged) {
	sb.settle()
	now := time.Now()
	live := sb.jobs[:0]
	for i, j := range sb.jobs {
		b.m.stage("queue", now.Sub(j.enq))
		j.frame.release() // the transport's pieces or the shm file, when the frame was copied from them
		if j.badErr != nil {
			j.done <- jobResult{err: &BadRequestError{j.badErr}}
			continue
		}
		if j.bad >= 0 {
			f := j.frame
			j.done <- jobResult{err: &BadRequestError{nonFiniteError(sb.slot.row(i)[j.bad], j.bad, f.W, f.C)}}
			continue
		}
		if err := j.ctx.Err(); err != nil {
			j.done <- jobResult{err: err} // counted by Server.Score
			continue
		}
		if k := len(live); k != i {
			copy(sb.slot.row(k), sb.slot.row(i))
		}
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	t0 := time.Now()
	res, err := forwardRows(sc, sb, 0, len(live))
	b.m.stage("forward", time.Since(t0))
	b.m.batch(w, len(live))
	if err != nil && len(live) > 1 {
		for i, j := range live {
			r, err := forwardRows(sc, sb, i, 1)
			if err != nil {
				j.done <- jobResult{err: err}
				continue
			}
			b.deliver(j, r[0])
		}
		return
	}
	for i, j := range live {
		if err != nil {
			j.done <- jobResult{err: err}
			continue
		}
		b.deliver(j, res[i])
	}
}

// forwardRows scores rows [i, i+n) of the staged batch on sc.
func forwardRows(sc *Scorer, sb *staged, i, n int) ([]Result, error) {
	s := sc.scope
	s.Reset()
	cube := s.Narrow(sb.slot.cube, 0, int64(i), int64(n))
	if err := s.Err(); err != nil {
		return nil, err
	}
	raw, err := sc.forward(cube, sb.wl)
	if err != nil {
		return nil, err
	}
	return sc.results(raw)
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
