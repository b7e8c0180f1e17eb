package dist

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spectraclip/spectraclip/torch"
)

// DefaultTimeout bounds the rendezvous and every collective.
const DefaultTimeout = 60 * time.Second

// Group is one process's membership of a data-parallel job; it implements
// trainer.Collective.
type Group struct {
	Env Env
	pg  *torch.ProcessGroup
	dev torch.Device
}

// Join builds the process group of env: Gloo when dev is the CPU, NCCL on dev (the CUDA
// device LOCAL_RANK selects) otherwise. Gloo's network device is GLOO_SOCKET_IFNAME's
// interface when set, the loopback when MASTER_ADDR is a loopback address, else the address
// of the machine's hostname.
func Join(env Env, dev torch.Device, timeout time.Duration) (*Group, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	o := torch.GroupOptions{MasterAddr: env.MasterAddr, Port: env.MasterPort, Rank: env.Rank, World: env.WorldSize, Timeout: timeout}
	if dev.Type == torch.DeviceCUDA {
		if !torch.NCCLAvailable() {
			return nil, fmt.Errorf("data-parallel training on %s needs the NCCL backend, which this build of csrc/ lacks (rebuild it against a CUDA LibTorch with nccl.h)", dev)
		}
		o.Backend, o.Device = torch.NCCL, dev.Index
	} else {
		if why := torch.GlooUnavailable(); why != "" {
			return nil, fmt.Errorf("data-parallel training on the CPU needs the Gloo backend, which this build of csrc/ (LibTorch %s) lacks: %s", torch.Version(), why)
		}
		o.Backend = torch.Gloo
		o.GlooInterface = os.Getenv("GLOO_SOCKET_IFNAME")
		if o.GlooInterface == "" && isLoopback(env.MasterAddr) {
			o.GlooHostname = "127.0.0.1"
		}
	}
	pg, err := torch.NewProcessGroup(o)
	if err != nil {
		return nil, fmt.Errorf("joining the data-parallel group as %s: %w", env, err)
	}
	return &Group{Env: env, pg: pg, dev: dev}, nil
}

func isLoopback(addr string) bool {
	if addr == "localhost" {
		return true
	}
	ip := net.ParseIP(addr)
	return ip != nil && ip.IsLoopback()
}

// Rank is this process's rank.
func (g *Group) Rank() int { return g.Env.Rank }

// WorldSize is the number of processes.
func (g *Group) WorldSize() int { return g.Env.WorldSize }

// Backend is the c10d backend in use.
func (g *Group) Backend() torch.Backend { return g.pg.Backend() }

// Close waits for every rank (so rank 0 keeps serving the store until all are done) and
// leaves the group.
func (g *Group) Close() error {
	if g == nil || g.pg == nil {
		return nil
	}
	err := g.pg.Barrier()
	g.pg.Close()
	g.pg = nil
	if err != nil {
		return g.explain("final barrier", err)
	}
	return nil
}

// Abort leaves the group without waiting for the others.
func (g *Group) Abort() {
	if g != nil && g.pg != nil {
		g.pg.Close()
		g.pg = nil
	}
}

// ErrPeer marks a collective that failed because another rank is gone.
var ErrPeer = errors.New("a data-parallel rank stopped")

// explain turns a failed collective into an error naming the ranks that stopped.
func (g *Group) explain(op string, err error) error {
	silent, lost, serr := g.pg.SilentRanks(2 * time.Second)
	switch {
	case serr != nil:
		return fmt.Errorf("rank %d: %s failed: %w", g.Env.Rank, op, err)
	case lost:
		return fmt.Errorf("rank %d: %s failed: the rendezvous store is gone (rank 0 serves it, or torchrun's agent): %w (%v)", g.Env.Rank, op, ErrPeer, err)
	case len(silent) > 0:
		names := make([]string, len(silent))
		for i, r := range silent {
			names[i] = fmt.Sprint(r)
		}
		return fmt.Errorf("rank %d: %s failed: rank %s stopped (its process died or hangs): %w (%v)", g.Env.Rank, op, strings.Join(names, ", "), ErrPeer, err)
	}
	return fmt.Errorf("rank %d: %s failed (within the %s timeout): %w", g.Env.Rank, op, g.pg.Timeout(), err)
}

// AllReduceMean averages the tensors across ranks in place, in one flat buffer.
func (g *Group) AllReduceMean(ts []*torch.Tensor) error {
	if err := g.pg.AllReduce(ts, 1/float64(g.Env.WorldSize)); err != nil {
		return g.explain("all-reduce", err)
	}
	return nil
}

// AllReduceFloat64 sums host values across ranks in place.
func (g *Group) AllReduceFloat64(v []float64) error {
	if len(v) == 0 {
		return nil
	}
	s := torch.NewScope()
	defer s.Close()
	t := torch.FromSlice(s, g.dev, v, int64(len(v)))
	if err := s.Err(); err != nil {
		return err
	}
	if err := g.pg.AllReduce([]*torch.Tensor{t}, 1); err != nil {
		return g.explain("all-reduce", err)
	}
	return torch.CopyTo(t, v)
}

// AllGatherBytes returns every rank's bytes in rank order.
func (g *Group) AllGatherBytes(b []byte) ([][]byte, error) {
	s := torch.NewScope()
	defer s.Close()
	n := g.pg.AllGather(s, torch.FromSlice(s, g.dev, []int64{int64(len(b))}, 1))
	if err := s.Err(); err != nil {
		return nil, g.explain("all-gather", err)
	}
	sizes, err := n.Int64s()
	if err != nil {
		return nil, err
	}
	// one leading byte, so that no rank sends an empty tensor
	data := g.pg.AllGather(s, torch.FromSlice(s, g.dev, append([]uint8{0}, b...), int64(len(b)+1)))
	if err := s.Err(); err != nil {
		return nil, g.explain("all-gather", err)
	}
	all, err := torch.Values[uint8](data)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(sizes))
	off := 0
	for r, sz := range sizes {
		out[r] = append([]byte(nil), all[off+1:off+1+int(sz)]...)
		off += 1 + int(sz)
	}
	return out, nil
}

// Broadcast overwrites the tensors with rank root's, in place.
func (g *Group) Broadcast(ts []*torch.Tensor, root int) error {
	if err := g.pg.Broadcast(ts, root); err != nil {
		return g.explain("broadcast", err)
	}
	return nil
}

// Barrier waits for every rank.
func (g *Group) Barrier() error {
	if err := g.pg.Barrier(); err != nil {
		return g.explain("barrier", err)
	}
	return nil
}

// Shard is this rank's part of an epoch's frame order (see Shard).
func (g *Group) Shard(order []int, pad bool) []int {
	return Shard(order, g.Env.Rank, g.Env.WorldSize, pad)
}
