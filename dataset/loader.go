package dataset

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
)

// Batch is what the data node feeds the pipeline: B frames stacked channels-last.
type Batch struct {
	// Cube holds B×H×W×C float32 values.
	Cube []float32
	// Mask holds the binary anomaly label per pixel (B×H×W); nil for unlabeled datasets.
	Mask []bool
	// ClassIDs holds the class id per pixel (B×H×W); nil for unlabeled datasets.
	ClassIDs   []int32
	B, H, W, C int
	// Wavelengths are the band centres in nm (band numbers when the source has none).
	Wavelengths []float32
	FrameIDs    []int
	// Owner is the owner of Cube's memory when Cube is a scene's memory that Go does not own
	// (Cube.Owner): a consumer may read the cube there (a tensor over it) instead of copying.
	Owner any
	// borrowed marks a Cube that is the dataset's own memory (a scene held whole): Release
	// does not recycle it.
	borrowed bool
}

// ShuffleMode selects whether a loader permutes frames each epoch.
type ShuffleMode int

// Shuffle modes; the zero value shuffles the train split only, as the reference does.
const (
	ShuffleAuto ShuffleMode = iota
	ShuffleOn
	ShuffleOff
)

// LoaderOptions configures a Loader.
type LoaderOptions struct {
	// BatchSize defaults to 2 (the reference configuration).
	BatchSize int
	Shuffle   ShuffleMode
	// Seed and the epoch number fix each epoch's permutation.
	Seed uint64
	// Prefetch is how many batches may be prepared ahead of the consumer (default 2); a
	// negative value loads synchronously in Next without goroutines.
	Prefetch int
	// Workers is the number of goroutines that load frames (default min(2, GOMAXPROCS)).
	Workers int
	// InMemory keeps every loaded frame for later epochs.
	InMemory bool
	// DropLast drops a final batch smaller than BatchSize.
	DropLast bool
	// Normal and Anomaly override the dataset's anomaly mapping when either is non-nil.
	Normal, Anomaly []int
	// Sampler, when set, picks the frames this process serves from each epoch's order
	// (a data-parallel rank's shard); batches are cut from what it returns.
	Sampler func(epoch int, order []int) []int
}

// Loader yields batches of one split.
type Loader struct {
	ds      *Dataset
	split   string
	ids     []int
	opts    LoaderOptions
	shuffle bool
	mapping *AnomalyMapping

	mu   sync.Mutex
	free [][]float32 // cube buffers handed back with Release, reused by later batches
}

// Release hands a batch's cube buffer back to the loader once the consumer has copied it (into
// a tensor): the next batches are decoded into it instead of into fresh memory, so that a long
// epoch over large frames keeps a fixed set of buffers (the read-ahead plus one) rather than
// leaving each frame's cube to the garbage collector. The batch must not be used afterwards.
// Calling it is optional.
func (l *Loader) Release(b *Batch) {
	if b == nil || b.Cube == nil || b.borrowed {
		if b != nil {
			b.Cube, b.Owner = nil, nil
		}
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.free) < max(l.opts.Prefetch, 0)+2 {
		l.free = append(l.free, b.Cube[:cap(b.Cube)])
	}
	b.Cube = nil
}

// buffer returns a cube buffer of n values, reused when one is free.
func (l *Loader) buffer(n int) []float32 {
	l.mu.Lock()
	for i, b := range l.free {
		if cap(b) >= n {
			l.free = append(l.free[:i], l.free[i+1:]...)
			l.mu.Unlock()
			return b[:n]
		}
	}
	l.mu.Unlock()
	return make([]float32, n)
}

// NewLoader prepares batches of split ("train", "val", "test" or "all").
func (d *Dataset) NewLoader(split string, opts LoaderOptions) (*Loader, error) {
	ids, err := d.Split(split)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("dataset %s: split %q is empty", d.Name, split)
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 2
	}
	if opts.BatchSize < 0 {
		return nil, fmt.Errorf("loader: batch size %d must be positive", opts.BatchSize)
	}
	if opts.Prefetch == 0 {
		opts.Prefetch = 2
	}
	if opts.Workers <= 0 {
		opts.Workers = min(2, runtime.GOMAXPROCS(0))
	}
	l := &Loader{ds: d, split: split, ids: append([]int(nil), ids...), opts: opts}
	switch opts.Shuffle {
	case ShuffleAuto:
		l.shuffle = split == "train"
	case ShuffleOn:
		l.shuffle = true
	}
	normal, anomaly := d.Normal, d.Anomaly
	if opts.Normal != nil || opts.Anomaly != nil {
		normal, anomaly = opts.Normal, opts.Anomaly
	}
	if l.mapping, err = NewAnomalyMapping(normal, anomaly); err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	if opts.BatchSize > 1 {
		f0, _ := d.Frame(ids[0])
		for _, id := range ids[1:] {
			if f, _ := d.Frame(id); f.H != f0.H || f.W != f0.W {
				return nil, fmt.Errorf("dataset %s: frame %d is %d×%d but frame %d is %d×%d; frames of different sizes need batch size 1", d.Name, id, f.H, f.W, f0.ID, f0.H, f0.W)
			}
		}
	}
	return l, nil
}

// Mapping returns the anomaly mapping in use (its Warning() mirrors the reference's).
func (l *Loader) Mapping() *AnomalyMapping { return l.mapping }

// Len returns the number of batches per epoch.
func (l *Loader) Len() int {
	n, bs := len(l.ids), l.opts.BatchSize
	if l.opts.Sampler != nil {
		n = len(l.opts.Sampler(0, l.ids)) // a shard's size does not depend on the epoch
	}
	if l.opts.DropLast {
		return n / bs
	}
	return (n + bs - 1) / bs
}

// Order returns the frame ids of an epoch in the order they are served.
func (l *Loader) Order(epoch int) []int {
	ids := append([]int(nil), l.ids...)
	if l.shuffle {
		r := rand.New(rand.NewPCG(l.opts.Seed, uint64(epoch)))
		r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	}
	if l.opts.Sampler != nil {
		ids = l.opts.Sampler(epoch, ids)
	}
	return ids
}

// Iterator walks one epoch. Call Close when done (also after an early break) to stop its
// goroutines.
type Iterator struct {
	l       *Loader
	batches [][]int
	k       int
	err     error

	ctx    context.Context
	cancel context.CancelFunc
	outs   []chan batchResult
	tokens chan struct{}
	wg     sync.WaitGroup
}

type batchResult struct {
	b   *Batch
	err error
}

// Epoch starts iterating epoch number epoch; ctx cancels the background loading.
func (l *Loader) Epoch(ctx context.Context, epoch int) *Iterator {
	order := l.Order(epoch)
	it := &Iterator{l: l}
	bs := l.opts.BatchSize
	for i := 0; i < len(order); i += bs {
		j := min(i+bs, len(order))
		if j-i < bs && l.opts.DropLast {
			break
		}
		it.batches = append(it.batches, order[i:j])
	}
	it.ctx, it.cancel = context.WithCancel(ctx)
	if l.opts.Prefetch < 0 {
		return it
	}
	it.outs = make([]chan batchResult, len(it.batches))
	for i := range it.outs {
		it.outs[i] = make(chan batchResult, 1)
	}
	it.tokens = make(chan struct{}, l.opts.Prefetch)
	jobs := make(chan int)
	it.wg.Add(1 + l.opts.Workers)
	go func() {
		defer it.wg.Done()
		defer close(jobs)
		for k := range it.batches {
			select {
			case it.tokens <- struct{}{}:
			case <-it.ctx.Done():
				return
			}
			select {
			case jobs <- k:
			case <-it.ctx.Done():
				return
			}
		}
	}()
	for w := 0; w < l.opts.Workers; w++ {
		go func() {
			defer it.wg.Done()
			for k := range jobs {
				if it.ctx.Err() != nil {
					return
				}
				b, err := l.build(it.batches[k])
				it.outs[k] <- batchResult{b, err}
			}
		}()
	}
	return it
}

// Next returns the next batch, or io.EOF after the last one.
func (it *Iterator) Next() (*Batch, error) {
	if it.err != nil {
		return nil, it.err
	}
	if it.k >= len(it.batches) {
		it.err = io.EOF
		return nil, io.EOF
	}
	k := it.k
	it.k++
	if it.outs == nil {
		if err := it.ctx.Err(); err != nil {
			it.err = err
			return nil, err
		}
		b, err := it.l.build(it.batches[k])
		if err != nil {
			it.err = err
		}
		return b, err
	}
	select {
	case r := <-it.outs[k]:
		<-it.tokens
		if r.err != nil {
			it.err = r.err
		}
		return r.b, r.err
	case <-it.ctx.Done():
		it.err = it.ctx.Err()
		return nil, it.err
	}
}

// Close stops background loading and waits for its goroutines to end.
func (it *Iterator) Close() {
	it.cancel()
	it.wg.Wait()
}

// build loads and stacks the frames of one batch. Frames read from disk are decoded straight
// into their place in the batch (no per-frame copy), into a buffer that Release handed back
// when there is one.
func (l *Loader) build(ids []int) (*Batch, error) {
	d := l.ds
	f0, ok := d.Frame(ids[0])
	if !ok {
		return nil, fmt.Errorf("dataset %s: no frame with id %d", d.Name, ids[0])
	}
	n, px := len(ids), f0.H*f0.W
	per := px * d.Bands
	// A one-frame batch of a scene held in memory hands the frame's values over instead of
	// copying them into a batch buffer (a whole scene is the size of the cube).
	direct := n == 1 && d.scene != nil
	var cube []float32
	if !direct {
		cube = l.buffer(n * per)
	}
	b := &Batch{B: n, H: f0.H, W: f0.W, C: d.Bands, FrameIDs: append([]int(nil), ids...),
		Cube: cube, Wavelengths: append([]float32(nil), d.Wavelengths...)}
	fail := func(err error) (*Batch, error) {
		l.Release(b)
		return nil, err
	}
	for i, id := range ids {
		var slot []float32
		if !direct {
			slot = b.Cube[i*per : (i+1)*per]
		}
		var s *Sample
		var err error
		if l.opts.InMemory {
			if err = d.Preload([]int{id}); err == nil {
				s, err = d.Load(id)
			}
		} else {
			s, err = d.LoadInto(id, slot)
		}
		if err != nil {
			return fail(err)
		}
		if i == 0 && s.ClassIDs != nil {
			b.ClassIDs = make([]int32, n*px)
			b.Mask = make([]bool, n*px)
		}
		if s.H != b.H || s.W != b.W || s.C != b.C {
			return fail(fmt.Errorf("dataset %s: frame %d is %d×%d×%d but frame %d in the same batch is %d×%d×%d", d.Name, id, s.H, s.W, s.C, ids[0], b.H, b.W, b.C))
		}
		if direct {
			if len(s.Cube) != per {
				return fail(fmt.Errorf("dataset %s: frame %d holds %d values, want %d", d.Name, id, len(s.Cube), per))
			}
			b.Cube, b.Owner, b.borrowed = s.Cube, s.Owner, true
		} else if len(s.Cube) > 0 && &s.Cube[0] != &slot[0] {
			copy(slot, s.Cube) // served from memory
		}
		if b.ClassIDs != nil {
			if s.ClassIDs == nil {
				return fail(fmt.Errorf("dataset %s: frame %d has no labels but frame %d has", d.Name, id, ids[0]))
			}
			copy(b.ClassIDs[i*px:], s.ClassIDs)
			l.mapping.Apply(s.ClassIDs, b.Mask[i*px:(i+1)*px])
		}
	}
	return b, nil
}
