package serve

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"
)

// Upper bounds of the server's sizing flags (#25 items 8, 9): past them a server is not a
// bigger server but one that never gets ready (--threads 100000), allocates gigabytes at
// start (--max-batch 100000000) or overflows a byte count (--max-cube-mb 2^43).
const (
	MaxThreads    = 256     // --threads: LibTorch threads per worker
	MaxWorkers    = 64      // --workers: pipeline copies
	MaxMaxBatch   = 1024    // --max-batch: frames per forward
	MaxQueue      = 65536   // --queue: requests that may wait
	MaxCubeMB     = 65536   // --max-cube-mb: 64 GiB of values
	MaxInflightMB = 1 << 20 // --max-inflight-mb: 1 TiB
	// DefaultInflightMB is --max-inflight-mb's default: four cubes of the default
	// --max-cube-mb (256), or one JSON body of the largest cube with its decoded copy.
	DefaultInflightMB = 1024
)

// Flags are serve's sizing flags as given on the command line, checked by Check before
// anything is converted or opened.
type Flags struct {
	MaxBatch, Queue, Workers, Threads int
	MaxWait, Timeout, Drain           time.Duration
	MaxCubeMB, MaxInflightMB          int64
}

// Check bounds every flag, naming it; it converts nothing, so no value can overflow.
func (f Flags) Check() error {
	switch {
	case f.MaxBatch < 1:
		return fmt.Errorf("--max-batch %d: must be ≥ 1 (1 = no batching)", f.MaxBatch)
	case f.MaxBatch > MaxMaxBatch:
		return fmt.Errorf("--max-batch %d: must be ≤ %d", f.MaxBatch, MaxMaxBatch)
	case f.Queue < 1:
		return fmt.Errorf("--queue %d: must be ≥ 1", f.Queue)
	case f.Queue > MaxQueue:
		return fmt.Errorf("--queue %d: must be ≤ %d", f.Queue, MaxQueue)
	case f.MaxWait < 0:
		return fmt.Errorf("--max-wait %v: must be ≥ 0 (0 = never wait for other requests)", f.MaxWait)
	case f.Workers < 0:
		return fmt.Errorf("--workers %d: must be ≥ 1 (0 = automatic)", f.Workers)
	case f.Workers > MaxWorkers:
		return fmt.Errorf("--workers %d: must be ≤ %d", f.Workers, MaxWorkers)
	case f.Threads < 0:
		return fmt.Errorf("--threads %d: must be ≥ 1 (0 = automatic)", f.Threads)
	case f.Threads > MaxThreads:
		return fmt.Errorf("--threads %d: must be ≤ %d", f.Threads, MaxThreads)
	case f.Timeout <= 0:
		return fmt.Errorf("--timeout %v: must be > 0", f.Timeout)
	case f.Drain < 0:
		return fmt.Errorf("--drain-timeout %v: must be ≥ 0", f.Drain)
	case f.MaxCubeMB < 1:
		return fmt.Errorf("--max-cube-mb %d: must be ≥ 1", f.MaxCubeMB)
	case f.MaxCubeMB > MaxCubeMB:
		return fmt.Errorf("--max-cube-mb %d: must be ≤ %d", f.MaxCubeMB, MaxCubeMB)
	case f.MaxInflightMB > MaxInflightMB:
		return fmt.Errorf("--max-inflight-mb %d: must be ≤ %d", f.MaxInflightMB, MaxInflightMB)
	case f.MaxInflightMB < f.MaxCubeMB:
		return fmt.Errorf("--max-inflight-mb %d: must be ≥ --max-cube-mb (%d), or no cube of the largest size could ever be read", f.MaxInflightMB, f.MaxCubeMB)
	}
	return nil
}

// ReadTokenFile reads a bearer token (--token-file): the file's text without its trailing
// newline. An empty file, or one that every user may read or write (mode o+r, o+w), is
// refused; group access is the deployer's choice (a secret mounted 0440).
func ReadTokenFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("--token-file %s: not a regular file", path)
	}
	if st.Mode().Perm()&0o007 != 0 {
		return "", fmt.Errorf("--token-file %s: readable by other users (mode %04o); chmod 600 (or 640) it", path, st.Mode().Perm())
	}
	if st.Size() > 4096 {
		return "", fmt.Errorf("--token-file %s: %d bytes, a token is at most 4096", path, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	tok := string(bytes.TrimRight(b, "\r\n"))
	if tok == "" {
		return "", fmt.Errorf("--token-file %s: empty (want the token on one line)", path)
	}
	if bytes.ContainsAny([]byte(tok), "\r\n\t ") {
		return "", fmt.Errorf("--token-file %s: the token has spaces or several lines (want one line)", path)
	}
	return tok, nil
}

// LoadTLS reads --tls-cert and --tls-key (PEM); both or neither.
func LoadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together: give both (PEM files) or neither")
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}, nil
}
