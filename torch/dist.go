package torch

/*
#include <stdlib.h>
#include "spectraclip.h"
*/
import "C"

import (
	"fmt"
	"runtime"
	"time"
	"unsafe"
)

// Backend names a c10d process-group implementation.
type Backend int

const (
	// Gloo runs collectives on CPU tensors over TCP.
	Gloo Backend = C.SC_DIST_GLOO
	// NCCL runs collectives on CUDA tensors (CUDA builds of csrc/ with NCCL only).
	NCCL Backend = C.SC_DIST_NCCL
)

func (b Backend) String() string {
	if b == NCCL {
		return "nccl"
	}
	return "gloo"
}

// NCCLAvailable reports whether csrc/ was built with c10d's NCCL process group.
func NCCLAvailable() bool { return C.sc_dist_nccl_available() != 0 }

// GlooUnavailable is "" when csrc/ was built with c10d's Gloo process group, else why not
// (a PyTorch wheel ships no gloo headers, and the shim is never built against another
// gloo's: see CMakeLists.txt).
func GlooUnavailable() string {
	if p := C.sc_dist_gloo_unavailable(); p != nil {
		return C.GoString(p)
	}
	return ""
}

// NCCLBlockingWaitEnv is the environment variable this LibTorch's NCCL process group reads
// to bound each collective by its timeout (TORCH_NCCL_BLOCKING_WAIT on 2.x, whose old name
// NCCL_BLOCKING_WAIT is deprecated there; NCCL_BLOCKING_WAIT on 1.x). NewProcessGroup sets
// it to 1 unless it is set already.
func NCCLBlockingWaitEnv() string { return C.GoString(C.sc_nccl_blocking_wait_env()) }

// distWaitUnfinished waits as every collective does on a c10d work that never completes
// (for tests: the error a timeout becomes on this LibTorch).
func distWaitUnfinished(rank, world int, timeout time.Duration) error {
	return takeErr("dist_wait", C.sc_dist_wait_unfinished(C.int(rank), C.int(world), C.int64_t(timeout.Milliseconds())))
}

// GroupOptions describes one process's place in a process group.
type GroupOptions struct {
	MasterAddr string // where rank 0 serves the TCP store
	Port       int    // the store's port
	Rank       int
	World      int
	Backend    Backend
	Device     int           // the CUDA device index (NCCL)
	Timeout    time.Duration // bound on the rendezvous and on every collective
	// Gloo's network device: by interface name (GLOO_SOCKET_IFNAME), else the address
	// Hostname resolves to, else Gloo's default (the machine's hostname).
	GlooInterface string
	GlooHostname  string
}

// ProcessGroup is a c10d process group: the collectives of data-parallel training. Its
// methods are called from one goroutine at a time.
type ProcessGroup struct {
	h    C.sc_pg
	opts GroupOptions
}

// NewProcessGroup joins (rank 0: serves) the TCP store at MasterAddr:Port and builds the
// process group; it returns when all World processes have joined, or fails after Timeout.
func NewProcessGroup(o GroupOptions) (*ProcessGroup, error) {
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	addr, ifn, hn := cstr(o.MasterAddr), cstr(o.GlooInterface), cstr(o.GlooHostname)
	defer freeC(addr)
	defer freeC(ifn)
	defer freeC(hn)
	var h C.sc_pg
	e := C.sc_dist_init(addr, C.int(o.Port), C.int(o.Rank), C.int(o.World), C.int(o.Backend),
		C.int(o.Device), C.int64_t(o.Timeout.Milliseconds()), ifn, hn, &h)
	if err := takeErr("dist_init", e); err != nil {
		return nil, err
	}
	return &ProcessGroup{h: h, opts: o}, nil
}

// Rank is this process's rank.
func (g *ProcessGroup) Rank() int { return g.opts.Rank }

// WorldSize is the number of processes in the group.
func (g *ProcessGroup) WorldSize() int { return g.opts.World }

// Backend is the group's backend.
func (g *ProcessGroup) Backend() Backend { return g.opts.Backend }

// Timeout bounds every collective.
func (g *ProcessGroup) Timeout() time.Duration { return g.opts.Timeout }

// Close leaves the group (rank 0 stops serving the store: call Barrier first so that the
// others are done with it).
func (g *ProcessGroup) Close() {
	if g == nil || g.h == nil {
		return
	}
	C.sc_dist_free(g.h)
	g.h = nil
}

func (g *ProcessGroup) check(op string) error {
	if g == nil || g.h == nil {
		return &Error{Op: op, Msg: "closed process group"}
	}
	return nil
}

// AllReduce sums the tensors across ranks in place (one flat buffer per dtype) and then
// multiplies them by scale (1/WorldSize for a mean).
func (g *ProcessGroup) AllReduce(ts []*Tensor, scale float64) error {
	return g.inPlace("allreduce", ts, func(p *C.sc_tensor) C.sc_err {
		e := C.sc_dist_allreduce(g.h, p, C.int(len(ts)), C.double(scale))
		runtime.KeepAlive(g)
		return e
	})
}

// Broadcast overwrites the tensors with those of rank root.
func (g *ProcessGroup) Broadcast(ts []*Tensor, root int) error {
	return g.inPlace("broadcast", ts, func(p *C.sc_tensor) C.sc_err {
		e := C.sc_dist_broadcast(g.h, p, C.int(len(ts)), C.int(root))
		runtime.KeepAlive(g)
		return e
	})
}

// inPlace runs a collective call over the handles of ts (changed in place), keeping the
// tensors alive until it returns (each call keeps the group alive itself).
func (g *ProcessGroup) inPlace(op string, ts []*Tensor, call func(p *C.sc_tensor) C.sc_err) error {
	if err := g.check(op); err != nil {
		return err
	}
	if len(ts) == 0 {
		return nil
	}
	p, free, err := handles(ts)
	if err != nil {
		return err
	}
	defer free()
	e := call(p)
	runtime.KeepAlive(ts)
	return takeErr(op, e)
}

// AllGather returns every rank's t concatenated along dim 0 in rank order, owned by s;
// the ranks' dim-0 sizes may differ.
func (g *ProcessGroup) AllGather(s *Scope, t *Tensor) *Tensor {
	if !s.ready("allgather", t) {
		return nil
	}
	if err := g.check("allgather"); err != nil {
		s.Fail(err)
		return nil
	}
	var out C.sc_tensor
	e := C.sc_dist_allgather(g.h, t.h, &out)
	runtime.KeepAlive(g)
	runtime.KeepAlive(t)
	return s.result("allgather", e, out, t)
}

// Barrier returns when every rank has reached it (or fails after the timeout).
func (g *ProcessGroup) Barrier() error {
	if err := g.check("barrier"); err != nil {
		return err
	}
	e := C.sc_dist_barrier(g.h)
	runtime.KeepAlive(g)
	return takeErr("barrier", e)
}

// SilentRanks watches the ranks' heartbeats for wait and returns those that did not beat
// (their process is gone or frozen); storeLost means the store itself is unreachable,
// that is rank 0 is gone.
func (g *ProcessGroup) SilentRanks(wait time.Duration) (silent []int, storeLost bool, err error) {
	if err := g.check("silent_ranks"); err != nil {
		return nil, false, err
	}
	flags := make([]C.int, g.opts.World)
	var lost C.int
	e := C.sc_dist_silent_ranks(g.h, C.int64_t(wait.Milliseconds()), (*C.int)(unsafe.Pointer(&flags[0])), &lost)
	runtime.KeepAlive(g)
	if err := takeErr("silent_ranks", e); err != nil {
		return nil, false, err
	}
	for r, f := range flags {
		if f != 0 {
			silent = append(silent, r)
		}
	}
	return silent, lost != 0, nil
}

// String describes the group for logs.
func (g *ProcessGroup) String() string {
	return fmt.Sprintf("%s rank %d of %d (store %s:%d)", g.opts.Backend, g.opts.Rank, g.opts.World, g.opts.MasterAddr, g.opts.Port)
}
