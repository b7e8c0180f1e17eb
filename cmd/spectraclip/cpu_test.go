package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/serve/client"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's utime and stime.
func clockTicks(t *testing.T) float64 {
	t.Helper()
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100 // Linux's USER_HZ on every architecture Go supports
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || v <= 0 {
		t.Fatalf("getconf CLK_TCK: %q", out)
	}
	return v
}

// procCPU is the CPU time (user + system, all threads) of process pid so far, in seconds,
// read from /proc/PID/stat by this test (not through Prometheus).
func procCPU(t *testing.T, pid int, hz float64) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// the command name may hold spaces and parentheses: the fields start after the last ')'
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	return float64(ut+st) / hz
}

// TestServerCPUPerFrame: the server CPU time per frame that loadtest reports (and the
// README quotes) is the server process's whole CPU time, user + system over all its
// threads (HTTP/gRPC decoding, copies, the forward passes, encoding, the Go runtime),
// spent over the level's timed frames, divided by their number. Against `spectraclip
// serve` running as a process of its own: /proc/PID/stat's utime + stime, read by the test
// just before the level's first and just after its last read of the server's
// process_cpu_seconds_total, brackets exactly the timed frames (the server's own request
// counter moves by the level's request count between the two reads, warm-up excluded);
// the figure × frames must equal that CPU time, less at most what the server spent outside
// the level between the reads (the /metrics scrapes themselves: 30 ms + 5 % allowed).
// The client's CPU (this process) is not in it. At exit, wait4's rusage of the process is
// at least the last /proc reading.
func TestServerCPUPerFrame(t *testing.T) {
	hz := clockTicks(t)
	run, _, _ := drainRun(t, 0)
	p := startServe(t, run, "--workers", "1", "--threads", "1", "--max-batch", "4")
	pid := p.cmd.Process.Pid
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	const h, w, bands = 256, 256, 61
	v := make([]float32, h*w*bands)
	for i := range v {
		v[i] = rng.Float32()
	}
	cube := client.Float32Cube(h, w, bands, v)
	const n, warmup, clients = 40, 5, 2
	var last float64
	for _, proto := range []string{"http", "grpc"} {
		addr := "http://" + p.http
		if proto == "grpc" {
			addr = "grpc://" + p.grpc
		}
		cl, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		metric := client.MetricsCPU("http://" + p.http + "/metrics")
		type mark struct {
			proc   float64 // /proc, this test's reading
			metric float64 // process_cpu_seconds_total, the figure's reading
			reqs   int     // the server's count of this protocol's requests
		}
		var marks []mark
		o := client.LoadOptions{Clients: []int{clients}, Requests: n, Warmup: warmup, Timeout: time.Minute,
			ServerCPU: func(ctx context.Context) (float64, error) {
				var m mark
				first := len(marks)%2 == 0
				if first { // /proc before the metric read
					m.proc, m.reqs = procCPU(t, pid, hz), p.requests(t, proto)
				}
				v, err := metric(ctx)
				m.metric = v
				if !first { // and after it
					m.reqs, m.proc = p.requests(t, proto), procCPU(t, pid, hz)
				}
				marks = append(marks, m)
				return v, err
			}}
		c0 := rusageSelf(t)
		levels, err := client.LoadTest(context.Background(), cl, cube, o)
		client0 := rusageSelf(t) - c0
		cl.Close()
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		if len(levels) != 1 || len(marks) != 2 {
			t.Fatalf("%s: %d levels, %d CPU reads", proto, len(levels), len(marks))
		}
		l := levels[0]
		if l.OK != n || l.Refused != 0 {
			t.Fatalf("%s: %d answered, %d refused (%s)", proto, l.OK, l.Refused, l.FirstError)
		}
		if d := marks[1].reqs - marks[0].reqs; d != n {
			t.Errorf("%s: the server received %d requests between the CPU reads, want the level's %d timed ones (warm-up excluded)", proto, d, n)
		}
		figure := l.ServerCPUms * float64(l.OK) // ms over the level, as reported
		proc := 1000 * (marks[1].proc - marks[0].proc)
		t.Logf("%s: server CPU %.2f ms/frame × %d = %.0f ms; /proc/%d/stat over the same frames: %.0f ms (%.2f ms/frame); metric reads %.3f → %.3f s; the client (this process) used %.0f ms",
			proto, l.ServerCPUms, l.OK, figure, pid, proc, proc/float64(n), marks[0].metric, marks[1].metric, 1000*client0)
		if figure > proc+1000/hz || figure < proc-(30+0.05*proc) {
			t.Errorf("%s: server CPU per frame × frames = %.0f ms, but the server process used %.0f ms over those frames (want within [-30 ms - 5 %%, +1 tick])", proto, figure, proc)
		}
		if proc < 1000/hz*5 {
			t.Errorf("%s: the server used only %.0f ms over %d frames of %d×%d×%d: too little to compare", proto, proc, n, h, w, bands)
		}
		last = marks[1].proc
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("serve exited with status %d: %s", code, p.err.String())
	}
	ru := p.state.SysUsage().(*syscall.Rusage)
	total := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	if total < last-1/hz {
		t.Errorf("wait4 says serve used %.3f s of CPU in all, less than /proc/%d/stat's %.3f s before it ended", total, pid, last)
	}
}

// rusageSelf is this process's CPU time so far (getrusage), in seconds.
func rusageSelf(t *testing.T) float64 {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
