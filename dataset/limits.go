package dataset

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// EnvMaxCubeBytes is the environment variable that sets MaxCubeBytes when the program starts:
// a byte count, optionally with a unit (K, M, G, T, with or without "iB"/"B"; powers of 1024),
// e.g. SPECTRACLIP_MAX_CUBE_BYTES=2GiB.
const EnvMaxCubeBytes = "SPECTRACLIP_MAX_CUBE_BYTES"

// MaxCubeBytes caps the memory one array may take once decoded to float32 (a cube, a label
// map, one variable of a .mat or .npz): every reader checks the size its header declares
// against it before allocating anything, so that a sparse or decompression-bomb file fails with
// an error naming the file and both sizes instead of exhausting memory.
//
// The default is DefaultMaxCubeBytes(); $SPECTRACLIP_MAX_CUBE_BYTES overrides it at start-up,
// and a program may set it directly (0 or less: the default).
var MaxCubeBytes int64

// envLimitErr is the error of a malformed $SPECTRACLIP_MAX_CUBE_BYTES; every read reports it.
var envLimitErr error

func init() {
	if v, ok := os.LookupEnv(EnvMaxCubeBytes); ok {
		n, err := ParseByteSize(v)
		if err != nil {
			envLimitErr = fmt.Errorf("environment %s=%q: %w", EnvMaxCubeBytes, v, err)
			return
		}
		MaxCubeBytes = n
	}
}

// DefaultMaxCubeBytes is 16 GiB or an eighth of the physical memory or of the address-space
// limit (ulimit -v), whichever is least: reading a cube can hold the file's bytes, the float32
// array and a reordered copy at once, and the pipeline makes several more.
func DefaultMaxCubeBytes() int64 {
	limit := int64(16 << 30)
	if m := physicalMemory(); m > 0 {
		limit = min(limit, m/8)
	}
	if as := addressSpaceLimit(); as > 0 {
		limit = min(limit, as/8)
	}
	return max(limit, 1<<20)
}

// cubeLimit returns the limit in force.
func cubeLimit() (int64, error) {
	if envLimitErr != nil {
		return 0, envLimitErr
	}
	if MaxCubeBytes > 0 {
		return MaxCubeBytes, nil
	}
	return DefaultMaxCubeBytes(), nil
}

// checkCubeSize fails when elems float32 values (what described them: "shape [..] of float64")
// would exceed the cube memory limit; name is the file ("" when the caller adds it).
func checkCubeSize(name, what string, elems int64) error {
	limit, err := cubeLimit()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if elems < 0 || elems > limit/4 {
		if elems < 0 {
			return fmt.Errorf("%s: %s has more elements than can be counted, over the cube memory limit of %s", name, what, FormatBytes(limit))
		}
		if name == "" {
			return fmt.Errorf("%s needs %s as float32, over the cube memory limit of %s (set %s to raise it)",
				what, FormatBytes(elems*4), FormatBytes(limit), EnvMaxCubeBytes)
		}
		return fmt.Errorf("%s: %s needs %s as float32, over the cube memory limit of %s (set %s to raise it)",
			name, what, FormatBytes(elems*4), FormatBytes(limit), EnvMaxCubeBytes)
	}
	return nil
}

// ParseByteSize parses a byte count such as 1073741824, 512M, 2GiB or 1.5G (units are powers
// of 1024; the value must be positive).
func ParseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	u := strings.ToUpper(t)
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"TIB", 1 << 40}, {"GIB", 1 << 30}, {"MIB", 1 << 20}, {"KIB", 1 << 10},
		{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(u, suf.s) {
			mult, u = suf.m, strings.TrimSpace(strings.TrimSuffix(u, suf.s))
			break
		}
	}
	f, err := strconv.ParseFloat(u, 64)
	if err != nil || f <= 0 || f*float64(mult) >= 1<<62 {
		return 0, fmt.Errorf("%q is not a positive byte count (e.g. 4294967296, 512MiB, 8G)", s)
	}
	return int64(f * float64(mult)), nil
}

// FormatBytes writes n in binary units with three significant digits and the exact count.
func FormatBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.3g %s (%d bytes)", v, units[i], n)
}

// openRegular opens path for reading after checking that it is a regular file: a FIFO would
// block the open (or the read) forever and a device such as /dev/zero never ends. Symbolic
// links are followed, so a link to a device is refused too. what prefixes errors ("npy", ...).
func openRegular(path, what string) (*os.File, int64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", what, err)
	}
	if err := regular(st, path, what); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", what, err)
	}
	// Check again on the open file: the path may have been replaced in between.
	st, err = f.Stat()
	if err == nil {
		err = regular(st, path, what)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

// regular fails unless st describes a regular file.
func regular(st fs.FileInfo, path, what string) error {
	m := st.Mode()
	if m.IsRegular() {
		return nil
	}
	kind := "not a regular file"
	switch {
	case m.IsDir():
		kind = "a directory"
	case m&fs.ModeNamedPipe != 0:
		kind = "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		kind = "a socket"
	case m&fs.ModeCharDevice != 0:
		kind = "a character device"
	case m&fs.ModeDevice != 0:
		kind = "a block device"
	}
	return fmt.Errorf("%s %s: is %s, not a regular file; point at the file itself", what, path, kind)
}

// CheckRegular fails unless path (links followed) is a regular file: a FIFO blocks a reader
// forever and a device never ends. what prefixes the error ("config", ...).
func CheckRegular(path, what string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return regular(st, path, what)
}

// ReadRegularFile reads a whole regular file of at most maxBytes bytes, refusing FIFOs,
// devices and links to them before opening.
func ReadRegularFile(path, what string, maxBytes int64) ([]byte, error) {
	f, size, err := openRegular(path, what)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > maxBytes {
		return nil, fmt.Errorf("%s %s: the file has %s, more than the %s this reader accepts", what, path, FormatBytes(size), FormatBytes(maxBytes))
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return b, nil
}
