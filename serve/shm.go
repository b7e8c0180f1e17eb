package serve

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"
)

// Shared memory: a client on the server's machine (a camera's acquisition process) writes
// a frame's values into a file of the server's shared-memory folder (--shm-dir, /dev/shm
// by default: a tmpfs, so the file is memory) and sends only the file's name and offset
// with the shape. The server reads the values straight into the batch's staging tensor, one
// copy, instead of receiving 16 MB over a socket (two copies and the protocol's work on the
// client and the server). The same idea as the system shared-memory extension of inference
// servers such as Triton, without registration: a request names its file.
//
// It is off unless the server is started with a folder: any file in it is readable through
// the service. The trust model: whoever may create files in the folder may have the server
// read them (with the server's permissions), so the folder must be writable only by users
// trusted with what the server can read. Symbolic links and files with several hard links
// (st_nlink > 1: a link made in the folder to a file elsewhere) are refused, so a file is
// read only if it lives in the folder alone. Only requests from the server's own machine (a loopback peer) may use it, so
// a server listening on a network address does not expose the folder to other hosts. Names
// are plain file names (no separators, no leading dot), opened without following symbolic
// links.

// shmSource is a frame's values in a shared-memory file: n float32 values at off.
type shmSource struct {
	f    *os.File
	name string
	off  int64
	n    int
}

// openShm opens name in dir for a cube of h×w×c float32 values at off, checking that the
// file holds them.
func openShm(dir, name string, off int64, h, w, c int) (*shmSource, error) {
	if dir == "" {
		return nil, errors.New("shared memory is off on this server (start it with --shm-dir)")
	}
	if name == "" || name == "." || name == ".." || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\\\x00") || len(name) > 255 {
		return nil, fmt.Errorf("shm name %q: want a plain file name in %s", name, dir)
	}
	if off < 0 {
		return nil, fmt.Errorf("shm %s: offset %d must be ≥ 0", name, off)
	}
	path := filepath.Join(dir, name)
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("shm %s: a symbolic link (refused)", path)
		}
		return nil, fmt.Errorf("shm %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("shm %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("shm %s: not a regular file", path)
	}
	// a hard link made in the folder to a file elsewhere (another user's, a secret) would
	// pass the name and O_NOFOLLOW checks: a file with more than one link is refused
	if sys, ok := st.Sys().(*syscall.Stat_t); !ok || sys.Nlink != 1 {
		f.Close()
		n := uint64(0)
		if ok {
			n = uint64(sys.Nlink)
		}
		return nil, fmt.Errorf("shm %s: the file has %d hard links (want 1: a link to a file outside the folder is refused)", path, n)
	}
	n := h * w * c
	if need := off + 4*int64(n); st.Size() < need {
		f.Close()
		return nil, fmt.Errorf("shm %s: shape (%d, %d, %d) of float32 at offset %d needs %d bytes, the file has %d", path, h, w, c, off, need, st.Size())
	}
	return &shmSource{f: f, name: path, off: off, n: n}, nil
}

// shmChunk is how much is read before it is scanned for NaN/Inf (while in the cache).
const shmChunk = 1 << 20

// read reads the values into dst (n long), checking each chunk for NaN/Inf right after it
// is read; it returns the index of the first NaN/Inf (-1: none) and stops there.
func (s *shmSource) read(dst []float32) (int, error) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst))), 4*len(dst))
	for done := 0; done < len(b); {
		m := min(shmChunk, len(b)-done)
		k, err := s.f.ReadAt(b[done:done+m], s.off+int64(done))
		if k < m {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("the file ended %d bytes in (changed after the request was checked)", int64(done+k))
			}
			return -1, fmt.Errorf("shm %s: %w", s.name, err)
		}
		if i := firstUnusable(dst[done/4 : (done+m)/4]); i >= 0 {
			return done/4 + i, nil
		}
		done += m
	}
	return -1, nil
}

func (s *shmSource) close() {
	if s != nil && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// shmFrame is a frame whose values are in the server's shared-memory folder: shape (H, W, C)
// of float32 in file name at byte offset off.
func (s *Server) shmFrame(shape []int64, dtype, name string, off uint64) (*Frame, error) {
	item, dname := itemSize(dtype)
	if dname != "float32" || !littleEndian {
		return nil, fmt.Errorf("shm %s: dtype %q: shared memory takes little-endian float32 only", name, dtype)
	}
	h, w, c, err := checkShape(shape, item, Limits{MaxBytes: s.opts.MaxBytes})
	if err != nil {
		return nil, err
	}
	if off > math.MaxInt64/2 {
		return nil, fmt.Errorf("shm %s: offset %d is out of range", name, off)
	}
	src, err := openShm(s.opts.ShmDir, name, int64(off), h, w, c)
	if err != nil {
		return nil, err
	}
	return &Frame{H: h, W: w, C: c, shm: src}, nil
}

// localPeer says whether a request's peer address (host:port) is on this machine's loopback:
// the only peers that may name shared-memory files.
func localPeer(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// remoteShmError refuses a shared-memory request from another machine (HTTP 403, gRPC
// PERMISSION_DENIED).
type remoteShmError struct{ from string }

func (e *remoteShmError) Error() string {
	return "shm: only clients on the server's machine may name shared-memory files (this request came from " + e.from + ")"
}
