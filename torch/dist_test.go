package torch

import (
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freePort asks the kernel for a free TCP port on the loopback.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// distInputs are rank r's inputs, drawn in Go from the seed (so the parent can redraw them
// independently of LibTorch): two float32 tensors and a float64 one for the all-reduce (two
// buckets), and (r+1)*2 rows of 3 for the gather.
func distInputs(seed uint64, r int) (a, b []float32, c []float64, rows []float32) {
	g := newRNG(seed + uint64(r)*7919)
	return randF32(g, 12, -3, 3), randF32(g, 5, -1e3, 1e3), randF64(g, 2, -1, 1), randF32(g, (r+1)*6, -1, 1)
}

type distResult struct {
	A, B     []float32
	C        []float64
	Gathered []float32
	GShape   []int64
	Bcast    []float32
	Err      string
}

func distChild(t *testing.T) {
	rank, _ := strconv.Atoi(os.Getenv("SC_DIST_CHILD"))
	port, _ := strconv.Atoi(os.Getenv("SC_DIST_PORT"))
	seed, _ := strconv.ParseUint(os.Getenv("SC_DIST_SEED"), 10, 64)
	out := os.Getenv("SC_DIST_OUT")
	mode := os.Getenv("SC_DIST_MODE")
	var res distResult
	write := func() {
		buf, _ := json.Marshal(res)
		if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("rank%d.json", rank)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g, err := NewProcessGroup(GroupOptions{MasterAddr: "127.0.0.1", Port: port, Rank: rank, World: 2,
		Backend: Gloo, Timeout: 5 * time.Second, GlooHostname: "127.0.0.1"})
	if err != nil {
		res.Err = err.Error()
		write()
		return
	}
	if mode == "die" && rank == 1 {
		os.Exit(3) // leaves without a word: rank 0 must not hang
	}
	if mode == "die" {
		start := time.Now()
		time.Sleep(300 * time.Millisecond)
		s := NewScope()
		x := s.FromFloat32([]float32{1, 2}, 2)
		err := g.AllReduce([]*Tensor{x}, 1)
		silent, lost, serr := g.SilentRanks(time.Second)
		res.Err = fmt.Sprintf("err=%v silent=%v lost=%v serr=%v after=%.1fs", err, silent, lost, serr, time.Since(start).Seconds())
		s.Close()
		write()
		return
	}
	defer g.Close()
	a, b, c, rows := distInputs(seed, rank)
	s := NewScope()
	defer s.Close()
	ta, tb, tc := s.FromFloat32(a, 3, 4), s.FromFloat32(b, 5), s.FromFloat64(c, 2)
	if err := g.AllReduce([]*Tensor{ta, tb, tc}, 1); err != nil {
		res.Err = err.Error()
		write()
		return
	}
	res.A, _ = ta.Float32s()
	res.B, _ = tb.Float32s()
	res.C, _ = tc.Float64s()
	gt := g.AllGather(s, s.FromFloat32(rows, int64(rank+1)*2, 3))
	bc := s.FromFloat32([]float32{float32(rank), float32(rank) + 0.5}, 2)
	if err := g.Broadcast([]*Tensor{bc}, 1); err != nil {
		res.Err = err.Error()
	}
	if s.Err() != nil {
		res.Err = s.Err().Error()
	} else {
		res.Gathered, _ = gt.Float32s()
		res.GShape = gt.Shape()
		res.Bcast, _ = bc.Float32s()
	}
	if err := g.Barrier(); err != nil && res.Err == "" {
		res.Err = err.Error()
	}
	write()
}

// runDistChildren starts two processes of this test binary as ranks 0 and 1 and returns
// their results.
func runDistChildren(t *testing.T, test, mode string, seed uint64) [2]distResult {
	t.Helper()
	if why := GlooUnavailable(); why != "" {
		t.Skipf("LibTorch %s: Gloo is not built in: %s", Version(), why)
	}
	dir := t.TempDir()
	port := freePort(t)
	var cmds [2]*exec.Cmd
	var logs [2]strings.Builder
	for r := 0; r < 2; r++ {
		cmd := exec.Command(os.Args[0], "-test.run", "^"+test+"$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SC_DIST_CHILD="+strconv.Itoa(r), "SC_DIST_PORT="+strconv.Itoa(port),
			"SC_DIST_SEED="+strconv.FormatUint(seed, 10), "SC_DIST_OUT="+dir, "SC_DIST_MODE="+mode, "OMP_NUM_THREADS=1")
		cmd.Stdout, cmd.Stderr = &logs[r], &logs[r]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[r] = cmd
	}
	for r := 0; r < 2; r++ {
		_ = cmds[r].Wait()
	}
	var res [2]distResult
	for r := 0; r < 2; r++ {
		if mode == "die" && r == 1 {
			continue
		}
		buf, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("rank%d.json", r)))
		if err != nil {
			t.Fatalf("rank %d wrote no result: %v\n%s", r, err, logs[r].String())
		}
		if err := json.Unmarshal(buf, &res[r]); err != nil {
			t.Fatal(err)
		}
	}
	return res
}

// TestDistCollectivesGloo runs two real processes over Gloo on the loopback: the all-reduce
// (two dtypes, so two buckets) equals the sum computed in float64 from inputs redrawn here
// (float32 tolerance: one rounding, 1e-6 relative), the gather of uneven row counts is
// every rank's rows in rank order, and the broadcast gives rank 1's values everywhere.
func TestDistCollectivesGloo(t *testing.T) {
	if os.Getenv("SC_DIST_CHILD") != "" {
		distChild(t)
		return
	}
	seed := uint64(time.Now().UnixNano())
	res := runDistChildren(t, "TestDistCollectivesGloo", "", seed)
	a0, b0, c0, r0 := distInputs(seed, 0)
	a1, b1, c1, r1 := distInputs(seed, 1)
	for r := 0; r < 2; r++ {
		got := res[r]
		if got.Err != "" {
			t.Fatalf("rank %d (seed %d): %s", r, seed, got.Err)
		}
		check := func(name string, got []float64, x, y []float64) {
			if len(got) != len(x) {
				t.Fatalf("rank %d %s: %d values, want %d", r, name, len(got), len(x))
			}
			for i := range x {
				want := x[i] + y[i]
				if math.Abs(got[i]-want) > 1e-6*math.Max(1, math.Abs(want)) {
					t.Fatalf("rank %d %s[%d] = %v, float64 sum %v (seed %d)", r, name, i, got[i], want, seed)
				}
			}
		}
		check("a", f64s(got.A), f64s(a0), f64s(a1))
		check("b", f64s(got.B), f64s(b0), f64s(b1))
		check("c", got.C, c0, c1)
		want := append(append([]float32{}, r0...), r1...)
		if fmt.Sprint(got.GShape) != "[6 3]" || fmt.Sprint(got.Gathered) != fmt.Sprint(want) {
			t.Fatalf("rank %d gather: shape %v values %v, want [6 3] %v", r, got.GShape, got.Gathered, want)
		}
		if fmt.Sprint(got.Bcast) != "[1 1.5]" {
			t.Fatalf("rank %d broadcast: %v, want rank 1's [1 1.5]", r, got.Bcast)
		}
	}
}

// TestDistPeerDeathIsNamed: rank 1 exits right after the rendezvous; rank 0's all-reduce
// fails instead of hanging (bounded by the 5 s timeout) and the heartbeat names rank 1.
func TestDistPeerDeathIsNamed(t *testing.T) {
	if os.Getenv("SC_DIST_CHILD") != "" {
		distChild(t)
		return
	}
	res := runDistChildren(t, "TestDistPeerDeathIsNamed", "die", 1)
	msg := res[0].Err
	if !strings.Contains(msg, "silent=[1]") || strings.HasPrefix(msg, "err=<nil>") {
		t.Fatalf("rank 0 after rank 1 died: %s", msg)
	}
	var after float64
	if i := strings.Index(msg, "after="); i >= 0 {
		fmt.Sscanf(msg[i+len("after="):], "%fs", &after)
	}
	if after > 30 { // a hang guard, not a speed check: the group's timeout is 5 s
		t.Fatalf("rank 0 took %.1fs to notice (timeout 5 s): %s", after, msg)
	}
	t.Log(msg)
}

// TestDistWaitTimeoutIsOneLine: a collective that runs out of time is one line naming the
// rank, the world size and the timeout, whether LibTorch's Work::wait returns false (1.13)
// or throws with the backend's many-line message (2.x).
func TestDistWaitTimeoutIsOneLine(t *testing.T) {
	start := time.Now()
	err := distWaitUnfinished(3, 4, 150*time.Millisecond)
	if err == nil {
		t.Fatal("waiting on a work that never completes returned no error")
	}
	msg := err.Error()
	for _, w := range []string{"allreduce on rank 3 of 4", "150 ms"} {
		if !strings.Contains(msg, w) {
			t.Errorf("timeout error %q lacks %q", msg, w)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("timeout error is not one line: %q", msg)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("the wait returned after %v, before its 150 ms timeout", d)
	}
}

// TestNCCLBlockingWaitEnv: the shim sets the variable this LibTorch reads (2.x renamed it
// and warns on the old name).
func TestNCCLBlockingWaitEnv(t *testing.T) {
	want := "NCCL_BLOCKING_WAIT"
	if major, _, _ := strings.Cut(Version(), "."); major != "0" && major != "1" {
		want = "TORCH_NCCL_BLOCKING_WAIT"
	}
	if got := NCCLBlockingWaitEnv(); got != want {
		t.Errorf("LibTorch %s: the shim sets %s, want %s", Version(), got, want)
	}
}

// TestBuildInfoMatchesLibrary: the build line says CUDA is compiled exactly when the shim
// needs libtorch_cuda (read from the library file itself, not from the shim), and Gloo is
// listed exactly when it is available.
func TestBuildInfoMatchesLibrary(t *testing.T) {
	info := BuildInfo()
	lib := filepath.Join("..", BuildDir, "libspectraclip_c.so")
	out, err := exec.Command("readelf", "-d", lib).CombinedOutput()
	if err != nil {
		t.Fatalf("readelf -d %s: %v\n%s", lib, err, out)
	}
	cuda := strings.Contains(string(out), "[libtorch_cuda.so]")
	if got := strings.HasPrefix(info, "cuda compiled"); got != cuda {
		t.Errorf("build info %q, but %s needs libtorch_cuda.so: %v", info, lib, cuda)
	}
	if got := strings.Contains(info, " gloo"); got != (GlooUnavailable() == "") {
		t.Errorf("build info %q against GlooUnavailable %q", info, GlooUnavailable())
	}
	if NCCLAvailable() != strings.Contains(info, "nccl ") {
		t.Errorf("build info %q against NCCLAvailable %v", info, NCCLAvailable())
	}
}
