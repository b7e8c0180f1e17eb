package torch

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// vmRSS is the process's resident memory now (/proc/self/status VmRSS), in bytes.
func vmRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS line")
	return 0
}

// TrimCPUCache gives the trimmed blocks' memory back to the kernel, also the blocks under
// glibc's mmap threshold (which glibc raises to the size of a larger block once one is freed):
// those went back to glibc's heap and stayed resident (a whole-scene run kept ~100 MB of them
// from phase to phase). Before: 256 MiB of freed 8 MiB blocks stayed resident after the trim.
func TestTrimCPUCacheReturnsMemory(t *testing.T) {
	if err := SetCachingAllocator(true); err != nil {
		t.Fatal(err)
	}
	defer SetCachingAllocator(false)
	s := newScope(t)
	// a 24 MiB block freed: glibc's mmap threshold rises to 24 MiB, so the 8 MiB blocks
	// below come from its heap
	s.Ones([]int64{6 << 20}, Float32, CPU).Free()
	if _, err := TrimCPUCache(); err != nil {
		t.Fatal(err)
	}
	var blocks []*Tensor
	for i := 0; i < 32; i++ {
		blocks = append(blocks, s.Ones([]int64{2 << 20}, Float32, CPU)) // 8 MiB, touched
	}
	keep := s.Ones([]int64{1 << 10}, Float32, CPU) // above them in the heap
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		b.Free() // into the cache
	}
	before := vmRSS(t)
	if _, err := TrimCPUCache(); err != nil {
		t.Fatal(err)
	}
	after := vmRSS(t)
	keep.Free()
	if drop := before - after; drop < 192<<20 {
		t.Fatalf("trimming 256 MiB of cached blocks lowered the resident memory by %d MiB (%d -> %d MiB), want at least 192", drop>>20, before>>20, after>>20)
	}
}
