package dataset

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"
)

func collect(t *testing.T, l *Loader, epoch int) []*Batch {
	t.Helper()
	it := l.Epoch(context.Background(), epoch)
	defer it.Close()
	var out []*Batch
	for {
		b, err := it.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
}

func TestLoaderEpochs(t *testing.T) {
	h := newHandDataset(t, 7, 4, 5, 3)
	h.manifest.Splits = Splits{Train: []int{0, 1, 2, 3, 4, 5, 6}, Val: []int{5, 6}, Test: []int{6}}
	d, err := Open(h.write(t))
	if err != nil {
		t.Fatal(err)
	}
	l, err := d.NewLoader("train", LoaderOptions{BatchSize: 3, Seed: 42})
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 3 {
		t.Fatalf("Len %d, want 3", l.Len())
	}
	var orders [][]int
	for epoch := 0; epoch < 3; epoch++ {
		var seen []int
		for _, b := range collect(t, l, epoch) {
			if b.H != 4 || b.W != 5 || b.C != 3 || len(b.Cube) != b.B*60 || len(b.Mask) != b.B*20 || len(b.ClassIDs) != b.B*20 {
				t.Fatalf("batch shape %d×%d×%d×%d with %d values", b.B, b.H, b.W, b.C, len(b.Cube))
			}
			for i, id := range b.FrameIDs {
				want := h.frames[id].Data
				if !slices.Equal(b.Cube[i*60:(i+1)*60], want) {
					t.Fatalf("epoch %d frame %d: cube differs", epoch, id)
				}
				s, _ := d.Load(id)
				wantMask, _ := BinaryAnomalyMask(s.ClassIDs, []int{0, 1, 2, 4}, []int{3})
				if !slices.Equal(b.Mask[i*20:(i+1)*20], wantMask) || !slices.Equal(b.ClassIDs[i*20:(i+1)*20], s.ClassIDs) {
					t.Fatalf("epoch %d frame %d: mask or class ids differ", epoch, id)
				}
			}
			if b.Wavelengths[2] != 520 {
				t.Fatalf("wavelengths %v", b.Wavelengths)
			}
			seen = append(seen, b.FrameIDs...)
		}
		if !slices.Equal(seen, l.Order(epoch)) {
			t.Fatalf("epoch %d served %v, Order says %v", epoch, seen, l.Order(epoch))
		}
		sorted := slices.Sorted(slices.Values(seen))
		if !slices.Equal(sorted, []int{0, 1, 2, 3, 4, 5, 6}) {
			t.Fatalf("epoch %d served %v", epoch, seen)
		}
		orders = append(orders, seen)
	}
	if slices.Equal(orders[0], orders[1]) && slices.Equal(orders[1], orders[2]) {
		t.Fatal("train order is the same in every epoch")
	}
	l2, _ := d.NewLoader("train", LoaderOptions{BatchSize: 3, Seed: 42, Prefetch: -1})
	if !slices.Equal(l2.Order(1), orders[1]) {
		t.Fatal("same seed gave another order")
	}
	// Synchronous loading gives the same batches.
	sync := collect(t, l2, 1)
	if len(sync) != 3 || !slices.Equal(sync[2].FrameIDs, orders[1][6:]) {
		t.Fatalf("synchronous epoch differs: %v", sync)
	}
	// val is not shuffled; DropLast drops the short batch; a mapping override applies.
	lv, _ := d.NewLoader("val", LoaderOptions{BatchSize: 1, Normal: []int{3}})
	if got := collect(t, lv, 5); len(got) != 2 || got[0].FrameIDs[0] != 5 || got[0].Mask[0] != true {
		t.Fatalf("val batches %v", got)
	}
	ld, _ := d.NewLoader("train", LoaderOptions{BatchSize: 3, DropLast: true})
	if got := collect(t, ld, 0); len(got) != 2 || ld.Len() != 2 {
		t.Fatalf("DropLast gave %d batches", len(got))
	}
	if _, err := d.NewLoader("holdout", LoaderOptions{}); err == nil {
		t.Fatal("unknown split accepted")
	}
	_, err = d.NewLoader("train", LoaderOptions{Normal: []int{3}, Anomaly: []int{3}})
	mustContain(t, err, "both normal and anomaly")
}

// waitGoroutines waits until the goroutine count drops to at most n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, want at most %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLoaderNoGoroutineLeak(t *testing.T) {
	h := newHandDataset(t, 9, 4, 5, 3)
	h.manifest.Splits.Train = []int{0, 1, 2, 3, 4, 5, 6, 7, 8}
	d, err := Open(h.write(t))
	if err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	l, _ := d.NewLoader("train", LoaderOptions{BatchSize: 1, Prefetch: 2, Workers: 2})

	// Break after one batch and Close.
	it := l.Epoch(context.Background(), 0)
	if _, err := it.Next(); err != nil {
		t.Fatal(err)
	}
	it.Close()
	waitGoroutines(t, base)

	// Cancel the context mid-epoch: Next reports it, Close returns.
	ctx, cancel := context.WithCancel(context.Background())
	it = l.Epoch(ctx, 1)
	if _, err := it.Next(); err != nil {
		t.Fatal(err)
	}
	cancel()
	var last error
	for range 20 {
		if _, last = it.Next(); last != nil {
			break
		}
	}
	if !errors.Is(last, context.Canceled) {
		t.Fatalf("after cancel Next returned %v", last)
	}
	it.Close()
	waitGoroutines(t, base)

	// A consumer that never reads: the producers stop at the bounded queue and Close ends them.
	it = l.Epoch(context.Background(), 2)
	time.Sleep(20 * time.Millisecond)
	it.Close()
	waitGoroutines(t, base)

	// Full epochs leave nothing behind either.
	collect(t, l, 3)
	waitGoroutines(t, base)
}

func TestLoaderErrorsAndMemory(t *testing.T) {
	h := newHandDataset(t, 4, 4, 5, 3)
	h.manifest.Splits.Train = []int{0, 1, 2, 3}
	dir := h.write(t)
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	dStream, err := Open(dir) // a second handle that has cached nothing
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := d.NewLoader("train", LoaderOptions{BatchSize: 2, InMemory: true})
	first := collect(t, mem, 0)
	// Break a frame on disk after opening: the streaming loader reports it, naming the file;
	// the in-memory loader keeps serving what it loaded.
	if err := os.Truncate(filepath.Join(dir, "f2.img"), 10); err != nil {
		t.Fatal(err)
	}
	again := collect(t, mem, 0)
	for i := range first {
		if !slices.Equal(first[i].Cube, again[i].Cube) {
			t.Fatal("in-memory epoch differs")
		}
	}
	stream, _ := dStream.NewLoader("train", LoaderOptions{BatchSize: 1, Shuffle: ShuffleOff})
	it := stream.Epoch(context.Background(), 0)
	defer it.Close()
	var gotErr error
	for {
		_, err := it.Next()
		if err != nil {
			gotErr = err
			break
		}
	}
	mustContain(t, gotErr, "frame 2", "f2.img", "truncated")
	if _, err := it.Next(); err == nil || err == io.EOF {
		t.Fatalf("Next after an error returned %v", err)
	}
}

// Batches whose buffers are handed back with Release are decoded into those buffers (a later
// batch's cube is an earlier one's memory) and still hold exactly the frames written, in the
// same order as a loader whose batches are never released, for in-memory and on-disk loading,
// with and without read-ahead.
func TestLoaderReleaseReusesBuffers(t *testing.T) {
	h := newHandDataset(t, 9, 4, 5, 3)
	h.manifest.Splits = Splits{Train: []int{0, 1, 2, 3, 4, 5, 6, 7, 8}, Val: []int{7}, Test: []int{8}}
	d, err := Open(h.write(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		inMem    bool
		prefetch int
	}{{false, -1}, {true, -1}, {false, 2}} {
		inMem := c.inMem
		opts := LoaderOptions{BatchSize: 2, Seed: 7, InMemory: inMem, Prefetch: c.prefetch}
		ref, err := d.NewLoader("train", opts)
		if err != nil {
			t.Fatal(err)
		}
		l, err := d.NewLoader("train", opts)
		if err != nil {
			t.Fatal(err)
		}
		for epoch := 0; epoch < 2; epoch++ {
			want := collect(t, ref, epoch)
			it := l.Epoch(context.Background(), epoch)
			seen := map[*float32]bool{}
			reused := false
			for k := 0; ; k++ {
				b, err := it.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(b.FrameIDs, want[k].FrameIDs) || !slices.Equal(b.Cube, want[k].Cube) || !slices.Equal(b.Mask, want[k].Mask) {
					t.Fatalf("in memory %v, epoch %d, batch %d: frames %v differ from the unreleased loader's %v", inMem, epoch, k, b.FrameIDs, want[k].FrameIDs)
				}
				for i, id := range b.FrameIDs {
					if !slices.Equal(b.Cube[i*60:i*60+60], h.frames[id].Data) {
						t.Fatalf("frame %d differs from what was written", id)
					}
				}
				p := &b.Cube[:cap(b.Cube)][0]
				reused = reused || seen[p]
				seen[p] = true
				l.Release(b)
			}
			it.Close()
			// Synchronous loading builds each batch after the previous one was released; with
			// read-ahead the release may come after the next batch was built.
			if !reused && c.prefetch < 0 {
				t.Errorf("in memory %v, epoch %d: no batch reused a released buffer", inMem, epoch)
			}
		}
	}
}
