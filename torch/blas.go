package torch

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// BLASInfo names the BLAS library LibTorch's CPU matrix products run on in this process.
type BLASInfo struct {
	Path string // the mapped file, symlinks resolved ("" when none was found)
	// openblas-openmp, openblas-pthread, openblas-serial, openblas, reference, mkl, other,
	// or unknown (no BLAS library mapped: linked into LibTorch itself, or /proc unreadable)
	Kind string
}

// Warning is why this BLAS is slow or at odds with LibTorch's thread count, with the fix;
// "" when it is fine.
func (b BLASInfo) Warning() string {
	switch b.Kind {
	case "reference":
		return "LibTorch's matrix products run on the reference BLAS (" + b.Path + "), where the detector runs about 1.5× slower than on OpenBLAS: install libopenblas0-openmp (make deps does)"
	case "openblas-pthread":
		return "LibTorch's matrix products run on OpenBLAS's pthread build (" + b.Path + "), whose threads do not follow LibTorch's thread count (two serve workers each start one per core): install libopenblas0-openmp, or set OPENBLAS_NUM_THREADS=1"
	}
	return ""
}

// BLAS reports which BLAS library is mapped into this process (Debian's libblas.so.3 is an
// alternative: the reference implementation, or one of OpenBLAS's builds), read from
// /proc/self/maps, where the kernel names the file behind the symlinks.
func BLAS() BLASInfo {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return BLASInfo{Kind: "unknown"}
	}
	defer f.Close()
	return blasFromMaps(bufio.NewScanner(f))
}

func blasFromMaps(sc *bufio.Scanner) BLASInfo {
	var found BLASInfo
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		p := strings.Join(fields[5:], " ")
		base := filepath.Base(p)
		var kind string
		switch {
		case strings.HasPrefix(base, "libmkl_"):
			kind = "mkl"
		case strings.HasPrefix(base, "libopenblas") || strings.Contains(p, "/openblas"):
			kind = "openblas"
			for _, v := range []string{"openmp", "pthread", "serial"} {
				if strings.Contains(p, "/openblas-"+v+"/") {
					kind = "openblas-" + v
				}
			}
		case strings.HasPrefix(base, "libblas.so"):
			kind = "other"
			if strings.Contains(p, "/blas/") {
				kind = "reference" // Debian's libblas3: /usr/lib/<triplet>/blas/libblas.so.3
			}
		default:
			continue
		}
		// an optimised library wins over a reference libblas mapped beside it
		if found.Kind == "" || found.Kind == "reference" || found.Kind == "other" {
			found = BLASInfo{Path: p, Kind: kind}
		}
	}
	if found.Kind == "" {
		found.Kind = "unknown"
	}
	return found
}
