package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/serve/client"
	"github.com/spectraclip/spectraclip/serve/servepb"
)

// serveProc is `spectraclip serve` running as a process of its own (this test binary as
// the program, see envAsMain).
type serveProc struct {
	cmd        *exec.Cmd
	out, err   *syncBuffer
	http, grpc string // host:port
	exited     chan struct{}
	state      *os.ProcessState
}

// startServe starts `spectraclip serve --run run` on loopback ports with the extra flags
// and waits until it says where it listens; the process is killed if the test ends first.
func startServe(t *testing.T, run string, flags ...string) *serveProc {
	t.Helper()
	p := &serveProc{out: &syncBuffer{}, err: &syncBuffer{}, exited: make(chan struct{})}
	args := append([]string{"--log-level", "info", "serve", "--run", run, "--addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0"}, flags...)
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), envAsMain+"=1", "OMP_NUM_THREADS=1")
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.err
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.state = p.cmd.ProcessState
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
	})
	re := regexp.MustCompile(`http (\S+) grpc (\S+)`)
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			p.http, p.grpc = m[1], m[2]
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("serve ended (%v) before listening: %s", p.state, p.err.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("serve did not say where it listens within 120 s: %q %s", p.out.String(), p.err.String())
	return nil
}

// wait waits (bounded) for the process to end and returns its exit status.
func (p *serveProc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.state.ExitCode()
	case <-time.After(within):
		t.Fatalf("serve still running %v after SIGTERM; its log:\n%s", within, p.err.String())
		return -1
	}
}

// requests is spectraclip_serve_requests_total{protocol=proto} on the server's /metrics.
func (p *serveProc) requests(t *testing.T, proto string) int {
	t.Helper()
	resp, err := http.Get("http://" + p.http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^spectraclip_serve_requests_total\{protocol="` + proto + `"\} (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return int(v)
}

// waitFor polls cond (bounded: the machine is shared and loaded) and fails with what.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("waited 60 s for %s", what)
}

// slowUpload is an HTTP request sent over a raw connection whose body is held back.
type slowUpload struct {
	conn net.Conn
	rest []byte
}

// startSlowUpload sends the request line, the headers and the first half of the body.
func startSlowUpload(t *testing.T, addr string, body []byte) *slowUpload {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	half := len(body) / 2
	fmt.Fprintf(c, "POST /v1/score?map=npy&frame_id=slow HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-npy\r\nContent-Length: %d\r\n\r\n", addr, len(body))
	if _, err := c.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	return &slowUpload{conn: c, rest: body[half:]}
}

// finish sends the rest of the body and reads the answer.
func (u *slowUpload) finish() (*http.Response, []byte, error) {
	if _, err := u.conn.Write(u.rest); err != nil {
		return nil, nil, err
	}
	u.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(u.conn), nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// gatedConn passes the first limit bytes written and then holds every write until gate
// is closed: a gRPC client on it sends its call's headers and the head of the cube, and
// the rest of the cube never comes.
type gatedConn struct {
	net.Conn
	limit int
	sent  int
	gate  chan struct{}
}

func (c *gatedConn) Write(p []byte) (int, error) {
	if c.sent+len(p) > c.limit {
		<-c.gate
		return 0, net.ErrClosed
	}
	c.sent += len(p)
	return c.Conn.Write(p)
}

// startSlowGRPC starts a Score call whose cube stops arriving after its first 64 KiB.
func startSlowGRPC(t *testing.T, addr string, cube *client.Cube) {
	t.Helper()
	gate := make(chan struct{})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			return &gatedConn{Conn: c, limit: 64 << 10, gate: gate}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(gate); conn.Close() })
	go servepb.NewScorerClient(conn).Score(context.Background(), client.Request(cube, false))
}

// drainRun trains a small run (PCA, 32×32 frames) and returns it with n random cubes
// (.npy bytes and client cubes of the same values).
func drainRun(t *testing.T, n int) (string, [][]byte, []*client.Cube) {
	t.Helper()
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	mustRun(t, append([]string{"train", "--variant", "pca", "--out", run}, tiny(dir, "1")...)...)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	var npys [][]byte
	var cubes []*client.Cube
	for i := 0; i < n; i++ {
		v := make([]float32, 32*32*61)
		for k := range v {
			v[k] = rng.Float32()
		}
		var b bytes.Buffer
		if err := dataset.EncodeNPY(&b, v, 32, 32, 61); err != nil {
			t.Fatal(err)
		}
		npys = append(npys, b.Bytes())
		c := client.Float32Cube(32, 32, 61, v)
		c.FrameID = fmt.Sprintf("cube-%d", i)
		cubes = append(cubes, c)
	}
	return run, npys, cubes
}

type httpAnswer struct {
	status int
	score  string // X-Spectraclip-Image-Score
	body   []byte // the score map, .npy
	err    error
}

func postNPY(addr string, body []byte) httpAnswer {
	resp, err := http.Post("http://"+addr+"/v1/score?map=npy", "application/x-npy", bytes.NewReader(body))
	if err != nil {
		return httpAnswer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return httpAnswer{resp.StatusCode, resp.Header.Get("X-Spectraclip-Image-Score"), b, err}
}

// TestServeDrainsOnSIGTERM: `spectraclip serve` (a process of its own) gets SIGTERM while
// three HTTP and three gRPC requests wait in a batch and an HTTP upload is half sent (with
// --max-wait 60s the batch waits for that upload: the six are in flight for sure). The
// server drains: the upload, finished after the server has logged that it is shutting
// down, and the six get their answers, each the same score and map, bit for bit, as an
// undisturbed request for the same cube got before; serve then exits with status 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	const k = 3 // requests per protocol
	run, npys, cubes := drainRun(t, 2*k+1)
	p := startServe(t, run, "--max-batch", "16", "--max-wait", "60s", "--workers", "1", "--drain-timeout", "120s")
	gc, err := client.Dial("grpc://" + p.grpc)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()

	// undisturbed: each cube alone (nothing else arriving, so no wait)
	wantHTTP := make([]httpAnswer, len(npys))
	for i := 0; i < k; i++ {
		wantHTTP[i] = postNPY(p.http, npys[i])
	}
	wantHTTP[2*k] = postNPY(p.http, npys[2*k])
	for i, a := range wantHTTP {
		if (i < k || i == 2*k) && (a.err != nil || a.status != 200 || a.score == "") {
			t.Fatalf("undisturbed HTTP request %d: %d %v %.200s", i, a.status, a.err, a.body)
		}
	}
	wantGRPC := make([]*client.Result, len(cubes))
	for i := k; i < 2*k; i++ {
		if wantGRPC[i], err = gc.Score(context.Background(), cubes[i], true); err != nil {
			t.Fatalf("undisturbed gRPC request %d: %v", i, err)
		}
	}
	httpBefore, grpcBefore := p.requests(t, "http"), p.requests(t, "grpc")

	slow := startSlowUpload(t, p.http, npys[2*k])
	waitFor(t, "the server to take the slow upload", func() bool { return p.requests(t, "http") == httpBefore+1 })
	gotHTTP := make(chan struct {
		i int
		a httpAnswer
	}, k)
	for i := 0; i < k; i++ {
		go func() {
			gotHTTP <- struct {
				i int
				a httpAnswer
			}{i, postNPY(p.http, npys[i])}
		}()
	}
	type grpcAnswer struct {
		i   int
		r   *client.Result
		err error
	}
	gotGRPC := make(chan grpcAnswer, k)
	for i := k; i < 2*k; i++ {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			r, err := gc.Score(ctx, cubes[i], true)
			gotGRPC <- grpcAnswer{i, r, err}
		}()
	}
	waitFor(t, "the server to receive every request", func() bool {
		return p.requests(t, "http") == httpBefore+1+k && p.requests(t, "grpc") == grpcBefore+k
	})
	time.Sleep(200 * time.Millisecond) // the last ones from their handler into the batch
	if len(gotHTTP)+len(gotGRPC) != 0 {
		t.Fatalf("%d HTTP and %d gRPC answers came before SIGTERM: nothing held them in flight", len(gotHTTP), len(gotGRPC))
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "serve to log that it drains", func() bool { return strings.Contains(p.err.String(), "shutting down") })
	if len(gotHTTP)+len(gotGRPC) != 0 {
		t.Fatalf("%d HTTP and %d gRPC requests ended (answered or failed) before the upload finished: draining, the server should still wait for it", len(gotHTTP), len(gotGRPC))
	}
	resp, body, err := slow.finish()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("the upload finished after SIGTERM: %v %v %.200s", resp, err, body)
	}
	if w := wantHTTP[2*k]; resp.Header.Get("X-Spectraclip-Image-Score") != w.score || !bytes.Equal(body, w.body) {
		t.Errorf("the upload finished after SIGTERM: score %s, undisturbed %s; maps equal: %v", resp.Header.Get("X-Spectraclip-Image-Score"), w.score, bytes.Equal(body, w.body))
	}
	for range k {
		g := <-gotHTTP
		w := wantHTTP[g.i]
		if g.a.err != nil || g.a.status != 200 {
			t.Errorf("HTTP request %d in flight at SIGTERM: %d %v %.200s", g.i, g.a.status, g.a.err, g.a.body)
		} else if g.a.score != w.score || !bytes.Equal(g.a.body, w.body) {
			t.Errorf("HTTP request %d in flight at SIGTERM: score %s, undisturbed %s; maps equal: %v", g.i, g.a.score, w.score, bytes.Equal(g.a.body, w.body))
		}
	}
	for range k {
		g := <-gotGRPC
		w := wantGRPC[g.i]
		if g.err != nil {
			t.Errorf("gRPC request %d in flight at SIGTERM: %v", g.i, g.err)
		} else if g.r.ImageScore != w.ImageScore || g.r.Decision != w.Decision || g.r.AnomalyPixels != w.AnomalyPixels || !slices.Equal(g.r.Scores, w.Scores) {
			t.Errorf("gRPC request %d in flight at SIGTERM: score %v decision %v %d px, undisturbed %v %v %d px; maps equal: %v",
				g.i, g.r.ImageScore, g.r.Decision, g.r.AnomalyPixels, w.ImageScore, w.Decision, w.AnomalyPixels, slices.Equal(g.r.Scores, w.Scores))
		}
	}
	if code := p.wait(t, 120*time.Second); code != 0 {
		t.Errorf("serve exited with status %d after draining, want 0; its log:\n%s", code, p.err.String())
	}
	if strings.Contains(p.err.String(), "level=warning") || strings.Contains(p.err.String(), "level=error") {
		t.Errorf("a clean drain logged a warning:\n%s", p.err.String())
	}
}

// TestServeDrainTimeout: what --drain-timeout does to requests still in flight.
//
//   - An upload still arriving when the drain time is up (over HTTP, or over gRPC) is the
//     client's to finish: serve waits the whole --drain-timeout for it, then cuts it off,
//     logs a warning naming it, and exits 0.
//   - A request received in full and not answered by then is the server's failure: with
//     --max-wait longer than --drain-timeout a gRPC request waits in its batch for that
//     same upload; serve cuts it off (the client gets UNAVAILABLE), says so, and exits 1.
func TestServeDrainTimeout(t *testing.T) {
	run, npys, cubes := drainRun(t, 2)
	const drain = 2 * time.Second
	for _, c := range []struct {
		name    string
		maxWait string
		grpc    bool // a gRPC request waits in the batch
		slowRPC bool // and a gRPC upload is still arriving too
		code    int
		log     string
	}{
		{"upload cut off", "5ms", false, false, 0, `level=warning msg="drain timed out: cut off 1 request(s) still arriving or reading their answer (1 HTTP, 0 gRPC); every request received in full was answered"`},
		{"uploads cut off, HTTP and gRPC", "5ms", false, true, 0, `level=warning msg="drain timed out: cut off 2 request(s) still arriving or reading their answer (1 HTTP, 1 gRPC); every request received in full was answered"`},
		{"received request cut off", "60s", true, false, 1, `drain timed out: 1 request(s) received in full were not answered (in flight then: 1 HTTP, 1 gRPC)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := startServe(t, run, "--max-wait", c.maxWait, "--workers", "1", "--drain-timeout", drain.String())
			h0, g0 := p.requests(t, "http"), p.requests(t, "grpc")
			slow := startSlowUpload(t, p.http, npys[0])
			waitFor(t, "the server to take the slow upload", func() bool { return p.requests(t, "http") == h0+1 })
			grpcErr := make(chan error, 1)
			if c.grpc {
				gc, err := client.Dial("grpc://" + p.grpc)
				if err != nil {
					t.Fatal(err)
				}
				defer gc.Close()
				go func() {
					_, err := gc.Score(context.Background(), cubes[1], false)
					grpcErr <- err
				}()
				waitFor(t, "the server to receive the gRPC request", func() bool { return p.requests(t, "grpc") == g0+1 })
				time.Sleep(200 * time.Millisecond) // from its handler into the batch
				if len(grpcErr) != 0 {
					t.Fatalf("the gRPC request was answered before SIGTERM: %v", <-grpcErr)
				}
			}
			if c.slowRPC {
				startSlowGRPC(t, p.grpc, cubes[1])
				// nothing on the server counts a call before its message is in: give its
				// transport a moment to read the headers that did go out
				time.Sleep(time.Second)
			}
			t0 := time.Now()
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			code := p.wait(t, 60*time.Second)
			took := time.Since(t0)
			if code != c.code {
				t.Errorf("serve exited with status %d, want %d; its log:\n%s", code, c.code, p.err.String())
			}
			if took < drain {
				t.Errorf("serve exited %v after SIGTERM, before --drain-timeout %v: it did not wait for the upload", took, drain)
			}
			if !strings.Contains(p.err.String(), c.log) {
				t.Errorf("serve's log lacks %q:\n%s", c.log, p.err.String())
			}
			// the upload was cut off: its connection is closed without an answer
			slow.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if b, err := io.ReadAll(slow.conn); len(b) != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("the cut-off upload read %q, %v; want the connection closed without an answer", b, err)
			}
			if c.grpc {
				if err := <-grpcErr; err == nil || !strings.Contains(err.Error(), "Unavailable") {
					t.Errorf("the gRPC request cut off: %v, want UNAVAILABLE", err)
				}
			}
		})
	}
}
