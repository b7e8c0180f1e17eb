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

// TestCPUSecondsTracksWork: two goroutines spinning for a measured wall time add about
// that much CPU time each (independent check: the wall clock; wide bounds for a shared
// machine where the goroutines may not both get a core).
func TestCPUSecondsTracksWork(t *testing.T) {
	c0 := CPUSeconds()
	if c0 <= 0 {
		t.Fatalf("CPUSeconds at start: %v", c0)
	}
	const spin = 300 * time.Millisecond
	var wg sync.WaitGroup
	sink := make([]uint64, 2)
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t0 := time.Now(); time.Since(t0) < spin; {
				for i := range 10000 {
					sink[g] += uint64(i) * 2654435761
				}
			}
		}()
	}
	wg.Wait()
	used := CPUSeconds() - c0
	if used < 0.8*spin.Seconds() || used > 2*spin.Seconds()+0.3 {
		t.Fatalf("2 goroutines spinning %v used %.3f s of CPU", spin, used)
	}
}
