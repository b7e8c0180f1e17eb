package procstat

import (
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMBTracksAnAllocation: the resident set grows by about the size of a buffer that is
// written to (independent check: the bytes touched), and VmHWM is at least VmRSS.
func TestMBTracksAnAllocation(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc/self/status here")
	}
	before := MB("VmRSS:")
	if before <= 0 {
		t.Fatalf("VmRSS: %v MB", before)
	}
	// fresh anonymous memory (not Go's heap, which may hold freed pages already resident)
	buf, err := syscall.Mmap(-1, 0, 256<<20, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(buf)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	grown := MB("VmRSS:") - before
	if grown < 200 || grown > 320 {
		t.Fatalf("RSS grew by %.1f MB after touching 256 MB", grown)
	}
	rss := MB("VmRSS:")
	if hwm := MB("VmHWM:"); hwm+0.5 < rss { // read after RSS; kB rounding
		t.Fatalf("VmHWM %.1f < VmRSS %.1f", hwm, rss)
	}
	if MB("NoSuchKey:") != 0 {
		t.Fatal("an absent key must read 0")
	}
}

// TestCPUSecondsTracksWork: CPUSeconds (from /proc/self/stat) grows by the CPU time the
// process spends between two reads, measured independently by getrusage: two goroutines spin
// until getrusage says 0.3 s of CPU went by (CPU time, not wall time, so a loaded machine
// only makes it take longer). Tolerance: 3 of /proc's 10 ms ticks each way.
func TestCPUSecondsTracksWork(t *testing.T) {
	rusage := func() float64 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	r0 := rusage()
	c0 := CPUSeconds()
	r1 := rusage()
	if c0 <= 0 {
		t.Fatalf("CPUSeconds at start: %v", c0)
	}
	var wg sync.WaitGroup
	sink := make([]uint64, 2)
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rusage()-r1 < 0.3 {
				for i := range 10000 {
					sink[g] += uint64(i) * 2654435761
				}
			}
		}()
	}
	wg.Wait()
	r2 := rusage()
	c1 := CPUSeconds()
	r3 := rusage()
	// c0 was read between r0 and r1, c1 between r2 and r3
	if d, lo, hi := c1-c0, r2-r1, r3-r0; d < lo-0.03 || d > hi+0.03 {
		t.Fatalf("CPUSeconds grew by %.3f s; getrusage says %.3f to %.3f s (sink %v)", d, lo, hi, sink)
	}
}
