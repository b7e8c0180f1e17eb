package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/dataset"
)

// vmKiB reads a "Name:   N kB" line of /proc/PID/status.
func vmKiB(pid int, name string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, name+":"); ok {
			v, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return v
		}
	}
	return -1
}

// jsonBody streams a JSON request for a float32 cube of shape (h, w, c) whose base64 data
// is generated as it is read ("QUJD" is the bytes ABC; the test holds no copy of the body).
type jsonBody struct {
	head, tail []byte
	quartets   int64 // "QUJD" groups still to send
	last       []byte
	pos        int
	stage      int
}

func newJSONBody(h, w, c int64) (*jsonBody, int64) {
	n := h * w * c * 4
	b := &jsonBody{head: []byte(fmt.Sprintf(`{"shape":[%d,%d,%d],"dtype":"float32","data":"`, h, w, c)), tail: []byte(`"}`), quartets: n / 3}
	switch n % 3 {
	case 1:
		b.last = []byte("QQ==")
	case 2:
		b.last = []byte("QUI=")
	}
	return b, int64(len(b.head)) + b.quartets*4 + int64(len(b.last)) + int64(len(b.tail))
}

var quartetBlock = []byte(strings.Repeat("QUJD", 16<<10))

func (b *jsonBody) Read(p []byte) (int, error) {
	for {
		switch b.stage {
		case 0, 2, 3:
			src := [][]byte{b.head, nil, b.last, b.tail}[b.stage]
			if b.pos < len(src) {
				n := copy(p, src[b.pos:])
				b.pos += n
				return n, nil
			}
			b.stage, b.pos = b.stage+1, 0
			if b.stage == 4 {
				return 0, io.EOF
			}
		case 1:
			if b.quartets == 0 {
				b.stage = 2
				continue
			}
			k := min(int64(len(p)/4), b.quartets, int64(len(quartetBlock)/4))
			if k == 0 {
				return 0, io.ErrShortBuffer
			}
			n := copy(p, quartetBlock[:4*k])
			b.quartets -= k
			return n, nil
		default:
			return 0, io.EOF
		}
	}
}

// TestServeMemoryBudget (#25 item 7): 14 clients send 342 MB JSON bodies (256 MiB cubes,
// the largest the default --max-cube-mb takes) at once, each retrying on 503 for 20 s
// until it is answered. The server (this binary as spectraclip, a child process) must stay within
// idle + --max-inflight-mb + a margin (VmHWM), answer each body 503 at once or read it
// (the cubes have 64 bands, the run takes 61: 422 once read), and give the memory back afterwards. Before the budget
// the server read every body at once (7 GB for 4 such bodies); the test kills it when its
// RSS passes 2.5 GB above idle.
func TestServeMemoryBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: sends 4.8 GB over loopback")
	}
	serveBurst(t, burst{clients: 14, want: http.StatusUnprocessableEntity, seconds: 20, batchMiB: 0, minDone: 2,
		body: func() (io.Reader, int64, string) {
			b, n := newJSONBody(1024, 1024, 64)
			return b, n, "application/json"
		}})
}

// TestServeMemoryBudgetNPY (#25 item 7): 200 clients send 16 MB .npy frames (256×256×61,
// scored) at once, retrying on 503. The peak stays within idle + --max-inflight-mb + one
// batch (8 frames staged and forwarded in LibTorch: 640 MiB allowed); before the budget the
// server passed idle + 2.5 GiB within 4 s (the issue measured 2.64 GB).
func TestServeMemoryBudgetNPY(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: sends 3.2 GB over loopback")
	}
	vals := make([]float32, 256*256*61)
	for i := range vals {
		vals[i] = float32(i%1000) / 1000
	}
	var nb bytes.Buffer
	if err := dataset.EncodeNPY(&nb, vals, 256, 256, 61); err != nil {
		t.Fatal(err)
	}
	npy := nb.Bytes()
	serveBurst(t, burst{clients: 200, want: http.StatusOK, seconds: 60, batchMiB: 640, minDone: 200,
		body: func() (io.Reader, int64, string) { return bytes.NewReader(npy), int64(len(npy)), "application/x-npy" }})
}

// burst is one memory test: clients send body at once, each retrying on 503 for seconds;
// at least minDone must be answered want; the peak may pass idle + budget by batchMiB
// (one batch in LibTorch) + 256 MiB (the Go heap's soft limit is the budget + 64 MiB; the runtime, answers).
type burst struct {
	clients, want, minDone int
	seconds                time.Duration
	batchMiB               int64
	body                   func() (io.Reader, int64, string)
}

func serveBurst(t *testing.T, bs burst) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	mustRun(t, append([]string{"train", "--variant", "pca", "--out", runDir}, tiny(dir, "1")...)...)
	const inflightMB = 1024
	cmd := exec.Command(os.Args[0], "--log-level", "warn", "serve", "--run", runDir, "--addr", "127.0.0.1:0", "--grpc-addr", "", "--workers", "1", "--threads", "1",
		"--max-inflight-mb", strconv.Itoa(inflightMB))
	cmd.Env = append(os.Environ(), envAsMain+"=1", "OMP_NUM_THREADS=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`http (\S+) grpc`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case <-exited:
		t.Fatal("serve exited before it was ready")
	case <-time.After(120 * time.Second):
		t.Fatal("serve not ready within 120 s")
	}
	pid := cmd.Process.Pid
	time.Sleep(500 * time.Millisecond)
	idle := vmKiB(pid, "VmRSS")
	limit := idle + (inflightMB+256+bs.batchMiB)<<10 // KiB: the budget, one batch, a margin for the runtime and the answers
	kill := idle + 2560<<10
	var killed atomic.Bool
	stopWatch := make(chan struct{})
	var peakSeen atomic.Int64
	go func() {
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
			rss := vmKiB(pid, "VmRSS")
			if rss > peakSeen.Load() {
				peakSeen.Store(rss)
			}
			if rss > kill {
				killed.Store(true)
				cmd.Process.Kill()
				return
			}
		}
	}()
	clients := bs.clients
	var wg sync.WaitGroup
	codes := make([]int, clients)
	busy := make([]int, clients)
	tc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for time.Since(start) < bs.seconds*time.Second && !killed.Load() {
				body, n, ct := bs.body()
				req, _ := http.NewRequest("POST", base+"/v1/score", body)
				req.ContentLength = n
				req.Header.Set("Content-Type", ct)
				resp, err := tc.Do(req)
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusServiceUnavailable {
					busy[i]++
					time.Sleep(50 * time.Millisecond)
					continue
				}
				codes[i] = resp.StatusCode
				return
			}
		}(i)
	}
	wg.Wait()
	close(stopWatch)
	elapsed := time.Since(start)
	hwm := vmKiB(pid, "VmHWM")
	if killed.Load() {
		t.Fatalf("serve's RSS passed %d MiB (idle %d MiB + 2.5 GiB): killed", kill>>10, idle>>10)
	}
	read, refusals := 0, 0
	for i, c := range codes {
		refusals += busy[i]
		switch c {
		case bs.want:
			read++
		case 0:
			if busy[i] == 0 {
				t.Errorf("client %d: no answer", i)
			}
		default:
			t.Errorf("client %d: answered %d, want %d or 503", i, c, bs.want)
		}
	}
	t.Logf("idle %d MiB, VmHWM %d MiB (%+d), budget %d MiB, %v: %d of %d bodies answered %d, %d refusals (503)", idle>>10, hwm>>10, (hwm-idle)>>10, inflightMB,
		elapsed.Round(time.Millisecond), read, clients, bs.want, refusals)
	if hwm > limit {
		t.Errorf("VmHWM %d MiB: above idle %d MiB + --max-inflight-mb %d + one batch %d MiB + 256 MiB", hwm>>10, idle>>10, inflightMB, bs.batchMiB)
	}
	if read < bs.minDone {
		t.Errorf("%d bodies answered %d in %d s, want at least %d", read, bs.want, bs.seconds, bs.minDone)
	}
	// the memory goes back once the burst has drained
	deadline := time.Now().Add(10 * time.Second)
	after := vmKiB(pid, "VmRSS")
	for after > idle+(256+bs.batchMiB)<<10 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		after = vmKiB(pid, "VmRSS")
	}
	t.Logf("RSS after the burst: %d MiB", after>>10)
	if after > idle+(256+bs.batchMiB)<<10 {
		t.Errorf("RSS %d MiB 10 s after the burst: not given back (idle %d MiB)", after>>10, idle>>10)
	}
}
