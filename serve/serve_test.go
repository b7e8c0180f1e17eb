package serve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/infer"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/serve/client"
	"github.com/spectraclip/spectraclip/torch"
	"github.com/spectraclip/spectraclip/trainer"
)

// testRun is a tiny trained run (drcnn, 32×32 frames, 2 epochs) made once in TestMain.
var testRun string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "serve-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		testRun = filepath.Join(dir, "run")
		cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: []string{
			"data.root=" + filepath.Join(dir, "data"), "data.generate_if_missing=true", "data.synth.frames=8", "data.synth.height=32", "data.synth.width=32",
			"training.trainer.max_epochs=1", "+pipeline.detector.image_size=32", "training.threads=1",
		}})
		if err != nil {
			fmt.Fprintln(os.Stderr, "config:", err)
			return 1
		}
		if _, err := trainer.Train(cfg, trainer.Options{OutDir: testRun}); err != nil {
			fmt.Fprintln(os.Stderr, "train:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// startServer starts a server on loopback ports and stops it when the test ends.
func startServer(t *testing.T, o Options) (*Server, string, string) {
	t.Helper()
	return startServerOn(t, o, "127.0.0.1")
}

// startServerOn is startServer on ports of the address host; o.Run defaults to the test run.
func startServerOn(t *testing.T, o Options, host string) (*Server, string, string) {
	t.Helper()
	if o.Run == "" {
		o.Run = testRun
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	hl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(hl, gl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s, "http://" + hl.Addr().String(), gl.Addr().String()
}

func randomFrame(rng *rand.Rand, h, w, c int) *Frame {
	f := &Frame{H: h, W: w, C: c, Data: make([]float32, h*w*c)}
	for i := range f.Data {
		f.Data[i] = rng.Float32()
	}
	return f
}

func npyBytes(t *testing.T, f *Frame) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := dataset.EncodeNPY(&b, f.Data, f.H, f.W, f.C); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func post(t *testing.T, url string, body []byte) (*http.Response, []byte) {
	t.Helper()
	return postAs(t, url, "application/x-npy", body)
}

func postAs(t *testing.T, url, ctype string, body []byte) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, ctype, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// inferOutputs runs trainer.Infer over the run's data root and returns frame 0's cube and
// the .npy files infer wrote for it.
func inferOutputs(t *testing.T) (*Frame, []byte, []byte) {
	t.Helper()
	r, err := run.Open(testRun, run.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root := r.Cfg.Data.Root
	r.Pipeline.Close()
	out := t.TempDir()
	if _, err := infer.Infer(testRun, root, out, nil); err != nil {
		t.Fatal(err)
	}
	ds, err := dataset.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	smp, err := ds.Load(ds.Frames[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	scores, err := os.ReadFile(filepath.Join(out, "frame_000_scores.npy"))
	if err != nil {
		t.Fatal(err)
	}
	dec, err := os.ReadFile(filepath.Join(out, "frame_000_decisions.npy"))
	if err != nil {
		t.Fatal(err)
	}
	if ds.Frames[0].ID != 0 {
		t.Fatalf("frame 0 has id %d", ds.Frames[0].ID)
	}
	return &Frame{H: smp.H, W: smp.W, C: smp.C, Data: smp.Cube}, scores, dec
}

// TestHTTPScoreEqualsInfer: POST /v1/score gives infer's score map and decisions, byte for
// byte (both are .npy files written the same way), and answers JSON with the summary.
func TestHTTPScoreEqualsInfer(t *testing.T) {
	f, wantScores, wantDec := inferOutputs(t)
	_, url, _ := startServer(t, Options{MaxBatch: 4, MaxWait: time.Millisecond})
	body := npyBytes(t, f)
	resp, got := post(t, url+"/v1/score?map=npy", body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	if !bytes.Equal(got, wantScores) {
		t.Errorf("score map differs from infer's (%d vs %d bytes)", len(got), len(wantScores))
	}
	resp, got = post(t, url+"/v1/score?map=decisions", body)
	if resp.StatusCode != 200 || !bytes.Equal(got, wantDec) {
		t.Errorf("decisions differ from infer's (status %d)", resp.StatusCode)
	}
	resp, got = post(t, url+"/v1/score?frame_id=cam7", body)
	if resp.StatusCode != 200 || !strings.Contains(string(got), `"frame_id":"cam7"`) || !strings.Contains(string(got), `"height":32`) {
		t.Errorf("JSON answer (status %d): %s", resp.StatusCode, got)
	}
	resp, got = post(t, url+"/v1/score?map=png", body)
	if resp.StatusCode != 200 || !bytes.HasPrefix(got, []byte("\x89PNG")) {
		t.Errorf("PNG answer (status %d): %.40q", resp.StatusCode, got)
	}
}

// batchTol bounds how far a frame's scores may move when it is scored in a batch instead of
// alone: not at all. The detector's map smoothing used to run through conv2d, whose CPU
// algorithm depends on the batch size (≤ 1 ulp apart); its direct kernel sums each output
// in one fixed order (torch.TestGaussianBlurFloat32BatchIndependent).
const batchTol = 0.0

// compareMaps checks two results of one frame: scores within batchTol, decisions equal
// except on pixels whose score lies within batchTol of the decision threshold.
func compareMaps(t *testing.T, what string, a, b Result) {
	t.Helper()
	if d := a.ImageScore - b.ImageScore; d > batchTol || d < -batchTol {
		t.Errorf("%s: image score %v vs %v", what, a.ImageScore, b.ImageScore)
	}
	thr := float32(2)
	for k, v := range a.Decisions {
		if v && a.Scores[k] < thr {
			thr = a.Scores[k]
		}
	}
	worst := 0.0
	for k := range a.Scores {
		d := float64(a.Scores[k] - b.Scores[k])
		if d < 0 {
			d = -d
		}
		if d > worst {
			worst = d
		}
		if a.Decisions[k] != b.Decisions[k] && float64(a.Scores[k]-thr) > batchTol && float64(thr-a.Scores[k]) > batchTol {
			t.Errorf("%s pixel %d: decision %v vs %v with score %v, threshold %v", what, k, a.Decisions[k], b.Decisions[k], a.Scores[k], thr)
		}
	}
	if worst > batchTol {
		t.Errorf("%s: scores differ by up to %g (tolerance %g)", what, worst, batchTol)
	}
}

// TestBatchIndependence: frames scored in one batch equal the same frames scored one by
// one (within batchTol; see there), on fresh random frames.
func TestBatchIndependence(t *testing.T) {
	sc, err := OpenScorer(testRun, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	frames := make([]*Frame, 5)
	for i := range frames {
		frames[i] = randomFrame(rng, 32, 32, sc.Bands)
	}
	batched, err := sc.Score(frames)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		one, err := sc.Score([]*Frame{f})
		if err != nil {
			t.Fatal(err)
		}
		compareMaps(t, fmt.Sprintf("frame %d", i), one[0], batched[i])
	}
}

// TestWorkersEqualInfer: with three forward workers (three copies of the pipeline) at two
// LibTorch threads each, concurrent requests, batched and spread over the workers, each
// get infer's map of their frame byte for byte (infer ran at the run's one thread), and
// the server says how many workers it runs. Bad worker and thread counts are refused.
func TestWorkersEqualInfer(t *testing.T) {
	f, wantScores, _ := inferOutputs(t)
	prev := torch.NumThreads()
	t.Cleanup(func() { torch.SetNumThreads(prev) })
	s, url, _ := startServer(t, Options{Workers: 3, Threads: 2, MaxBatch: 2, MaxWait: 20 * time.Millisecond})
	if len(s.workers) != 3 || torch.NumThreads() != 2 {
		t.Fatalf("%d workers at %d threads, want 3 at 2", len(s.workers), torch.NumThreads())
	}
	body := npyBytes(t, f)
	const n = 12
	var wg sync.WaitGroup
	got := make([][]byte, n)
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, b := post(t, url+"/v1/score?map=npy", body)
			got[i], codes[i] = b, resp.StatusCode
		}()
	}
	wg.Wait()
	for i := range n {
		if codes[i] != 200 || !bytes.Equal(got[i], wantScores) {
			t.Errorf("request %d: status %d, map equal to infer's: %v", i, codes[i], bytes.Equal(got[i], wantScores))
		}
	}
	_, m := get(t, url+"/metrics")
	if !strings.Contains(string(m), "spectraclip_serve_workers 3") {
		t.Errorf("/metrics lacks spectraclip_serve_workers 3:\n%s", grepLines(string(m), "workers"))
	}
	// warm-up scores outside the batcher; of the ≥ 6 batches, more than one worker took some
	if used := strings.Count(string(m), "spectraclip_serve_forwards_total{worker="); used < 2 {
		t.Errorf("forwards ran on %d of 3 workers:\n%s", used, grepLines(string(m), "forwards_total"))
	}
	for _, o := range []Options{{Run: testRun, Workers: -1}, {Run: testRun, Threads: -2}} {
		if s, err := New(o); err == nil {
			s.Shutdown(context.Background())
			t.Errorf("%+v: no error", o)
		}
	}
}

// TestConcurrentRequestsBatch: concurrent HTTP requests are gathered into batches (the
// batch-size histogram sees a batch > 1) and each gets its own frame's map.
func TestConcurrentRequestsBatch(t *testing.T) {
	// one worker: with two, an idle one may take each of 8 requests alone when a loaded
	// machine spreads their arrivals out
	s, url, _ := startServer(t, Options{MaxBatch: 4, MaxWait: 200 * time.Millisecond, Queue: 16, Workers: 1})
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	const n = 8
	frames := make([]*Frame, n)
	want := make([]Result, n)
	for i := range frames {
		frames[i] = randomFrame(rng, 32, 32, s.Scorer().Bands)
	}
	// references scored alone, through the server's scorer before serving them
	for i, f := range frames {
		r, err := s.Score(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = r
	}
	var wg sync.WaitGroup
	got := make([]Result, n)
	errs := make([]error, n)
	for i := range frames {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			got[i], errs[i] = postFrame(url, frames[i])
		}(i)
	}
	wg.Wait()
	for i := range frames {
		if errs[i] != nil {
			t.Errorf("request %d: %v", i, errs[i])
			continue
		}
		compareMaps(t, fmt.Sprintf("request %d", i), want[i], got[i])
	}
	resp, body := get(t, url+"/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	m := string(body)
	for _, w := range []string{"spectraclip_serve_requests_total{protocol=\"http\"} 16", "spectraclip_serve_batch_size_bucket", "spectraclip_serve_queue_depth", "spectraclip_serve_stage_seconds_bucket{stage=\"forward\"", "spectraclip_serve_cpu_rss_bytes", "process_resident_memory_bytes"} {
		if !strings.Contains(m, w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
	var ones, all int
	for _, l := range strings.Split(m, "\n") {
		fmt.Sscanf(l, "spectraclip_serve_batch_size_bucket{le=\"1\"} %d", &ones)
		fmt.Sscanf(l, "spectraclip_serve_batch_size_count %d", &all)
	}
	if all == 0 || ones == all {
		t.Errorf("no batch had more than one frame:\n%s", grepLines(m, "batch_size"))
	}
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func grepLines(s, w string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, w) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestHealthAndReady: /healthz and /readyz answer once the server is warmed up.
func TestHealthAndReady(t *testing.T) {
	_, url, _ := startServer(t, Options{})
	for _, p := range []string{"/healthz", "/readyz"} {
		if resp, b := get(t, url+p); resp.StatusCode != 200 {
			t.Errorf("%s: %d %s", p, resp.StatusCode, b)
		}
	}
}

// TestBadRequests: a malformed body, a truncated cube, too many bands, a cube over the
// size limit and an expired deadline each get a clear error, and the server keeps serving.
func TestBadRequests(t *testing.T) {
	s, url, _ := startServer(t, Options{MaxBytes: 1 << 20})
	bands := s.Scorer().Bands
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	good := npyBytes(t, randomFrame(rng, 32, 32, bands))
	wrongBands := npyBytes(t, randomFrame(rng, 8, 8, bands+3))
	// a .npy header declaring a 4096×4096 cube and no data: refused before the data is read
	hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (4096, 4096, %d), }", bands)
	hdr += strings.Repeat(" ", (64-(10+len(hdr)+1)%64)%64) + "\n"
	var big bytes.Buffer
	big.WriteString("\x93NUMPY\x01\x00")
	big.Write([]byte{byte(len(hdr)), byte(len(hdr) >> 8)})
	big.WriteString(hdr)
	cases := []struct {
		name, query string
		body        []byte
		code        int
		want        []string
	}{
		{"malformed", "", []byte("not a cube"), 400, []string{"NUMPY"}},
		{"truncated", "", good[:len(good)-100], 400, []string{"truncated", "(32, 32,"}},
		{"band count", "", wrongBands, 422, []string{fmt.Sprintf("%d bands", bands+3), fmt.Sprintf("takes %d", bands)}},
		{"too large", "", big.Bytes(), 413, []string{"(4096, 4096,", "maximum of 1048576 bytes"}},
		{"deadline", "?timeout=1ns", good, 504, []string{"deadline"}},
		{"bad map", "?map=jpeg", good, 400, []string{"map="}},
	}
	for _, c := range cases {
		resp, b := post(t, url+"/v1/score"+c.query, c.body)
		if resp.StatusCode != c.code {
			t.Errorf("%s: status %d, want %d (%s)", c.name, resp.StatusCode, c.code, b)
		}
		for _, w := range c.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s: answer %q lacks %q", c.name, b, w)
			}
		}
		if resp, b := post(t, url+"/v1/score", good); resp.StatusCode != 200 {
			t.Fatalf("after %s: a good request got %d %s", c.name, resp.StatusCode, b)
		}
	}
}

// TestOverload: with a queue of 2 and more concurrent clients, some requests fail fast with
// 503 and Retry-After, the others are scored, and every request gets an answer; repeated
// overload does not grow the resident memory (rounds 2–4 stay within 64 MiB of round 1).
func TestOverload(t *testing.T) {
	// one worker, one frame a forward: at most 2 queued + 1 gathered + 1 running (with more
	// workers, small frames may be scored as fast as 32 clients send them)
	s, url, _ := startServer(t, Options{MaxBatch: 1, Queue: 2, Workers: 1})
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	body := npyBytes(t, randomFrame(rng, 128, 128, s.Scorer().Bands))
	const n = 32
	var rss []int64
	for round := 0; round < 5; round++ {
		codes, retry, _, wait := postConcurrently(url, body, n)
		wait()
		ok, busy := 0, 0
		for i, c := range codes {
			switch c {
			case 200:
				ok++
			case 503:
				busy++
				if retry[i] == "" {
					t.Errorf("request %d: 503 without Retry-After", i)
				}
			default:
				t.Errorf("round %d request %d: status %d", round, i, c)
			}
		}
		if ok == 0 || busy == 0 {
			t.Errorf("round %d: %d scored, %d refused: want both", round, ok, busy)
		}
		rss = append(rss, rssBytes())
	}
	// round 0 fills the request-buffer pool and LibTorch's caches: later rounds stay flat
	for _, r := range rss[2:] {
		if r-rss[1] > 64<<20 {
			t.Errorf("resident memory grew under repeated overload: %v MiB", mib(rss))
		}
	}
	t.Logf("RSS after each overload round: %v MiB", mib(rss))
	_, m := get(t, url+"/metrics")
	if !strings.Contains(string(m), `spectraclip_serve_errors_total{cause="queue_full"}`) {
		t.Errorf("/metrics does not count queue_full:\n%s", grepLines(string(m), "errors_total"))
	}
}

// postConcurrently posts body as a .npy frame n times at once; after wait returns, each
// request's status code, Retry-After header and transport error are filled in.
func postConcurrently(url string, body []byte, n int) (codes []int, retry []string, errs []error, wait func()) {
	codes, retry, errs = make([]int, n), make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := http.Post(url+"/v1/score", "application/x-npy", bytes.NewReader(body))
			if err != nil {
				errs[i] = err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i], retry[i] = resp.StatusCode, resp.Header.Get("Retry-After")
		}(i)
	}
	return codes, retry, errs, wg.Wait
}

func mib(v []int64) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = x >> 20
	}
	return out
}

// TestGracefulShutdown: Shutdown while requests are queued and in flight answers every
// request the server had received, then stops listening (Serve returns nil at cleanup).
func TestGracefulShutdown(t *testing.T) {
	s, url, _ := startServer(t, Options{MaxBatch: 1, Queue: 64})
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	body := npyBytes(t, randomFrame(rng, 32, 32, s.Scorer().Bands))
	const n = 12
	codes, _, errs, wait := postConcurrently(url, body, n)
	// wait (bounded) until the server has received every request
	for i := 0; i < 5000 && testutil.ToFloat64(s.m.requests.WithLabelValues("http")) < n; i++ {
		time.Sleep(time.Millisecond)
	}
	if got := testutil.ToFloat64(s.m.requests.WithLabelValues("http")); got < n {
		t.Fatalf("the server received %v of %d requests", got, n)
	}
	queued := s.b.QueueDepth()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	wait()
	for i := range codes {
		if errs[i] != nil || codes[i] != 200 {
			t.Errorf("request %d (received before shutdown, %d queued then): status %d, %v", i, queued, codes[i], errs[i])
		}
	}
	if resp, err := http.Get(url + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("server still answers after shutdown")
	}
}

// postFrame posts a frame and reads its score map and decisions back as .npy.
func postFrame(url string, f *Frame) (Result, error) {
	var b bytes.Buffer
	if err := dataset.EncodeNPY(&b, f.Data, f.H, f.W, f.C); err != nil {
		return Result{}, err
	}
	res := Result{H: f.H, W: f.W}
	for _, m := range []string{"npy", "decisions"} {
		resp, err := http.Post(url+"/v1/score?map="+m, "application/x-npy", bytes.NewReader(b.Bytes()))
		if err != nil {
			return res, err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return res, err
		}
		if resp.StatusCode != 200 {
			return res, fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		fmt.Sscan(resp.Header.Get("X-Spectraclip-Image-Score"), &res.ImageScore)
		if m == "npy" {
			fr, err := ReadMapNPY(bytes.NewReader(body), Limits{})
			if err == nil && len(fr.Data) != f.H*f.W {
				err = fmt.Errorf("map of %d values", len(fr.Data))
			}
			if err != nil {
				return res, err
			}
			res.Scores = fr.Data
		} else {
			if len(body) < f.H*f.W {
				return res, fmt.Errorf("decisions: %d bytes", len(body))
			}
			for _, v := range body[len(body)-f.H*f.W:] {
				res.Decisions = append(res.Decisions, v == 1)
			}
		}
	}
	return res, nil
}

// TestHTTPENVIEqualsInfer: an ENVI cube posted as multipart (header + data parts) gives
// the same map as infer on that .hdr, bit for bit; a form without its data part is refused.
func TestHTTPENVIEqualsInfer(t *testing.T) {
	r, err := run.Open(testRun, run.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hdr := filepath.Join(r.Cfg.Data.Root, "frames", "frame_003.hdr")
	r.Pipeline.Close()
	out := t.TempDir()
	if _, err := infer.Infer(testRun, hdr, out, nil); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(out, "frame_003_scores.npy"))
	if err != nil {
		t.Fatal(err)
	}
	_, url, _ := startServer(t, Options{})
	form := func(parts ...string) (*bytes.Buffer, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		for _, p := range parts {
			src := hdr
			if p == "data" {
				src = strings.TrimSuffix(hdr, ".hdr") + ".img"
			}
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			w, _ := mw.CreateFormFile(p, filepath.Base(src))
			w.Write(data)
		}
		mw.Close()
		return &b, mw.FormDataContentType()
	}
	b, ct := form("header", "data")
	resp, err := http.Post(url+"/v1/score?map=npy", ct, b)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, want) {
		t.Errorf("ENVI upload: status %d, map equal to infer's: %v (%.200s)", resp.StatusCode, bytes.Equal(got, want), got)
	}
	b, ct = form("header")
	resp, err = http.Post(url+"/v1/score", ct, b)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(got), "want parts header") {
		t.Errorf("header only: status %d %s", resp.StatusCode, got)
	}
}

// TestDeadlineWhileQueued: a request whose deadline passes while it waits in a batch being
// gathered is answered DeadlineExceeded and skipped by the forward; the request that
// completes the batch is scored, with its own frame (its row moves up over the dropped one).
func TestDeadlineWhileQueued(t *testing.T) {
	sc, err := OpenScorer(testRun, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	var scored []string
	var mu sync.Mutex
	// max-wait of an hour: the worker holds the first request until a second one comes
	b, err := NewBatcher(sc, 2, time.Hour, 4, nil, func(f *Frame, r *Result) {
		mu.Lock()
		scored = append(scored, f.ID)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	a, c := randomFrame(rng, 32, 32, sc.Bands), randomFrame(rng, 32, 32, sc.Bands)
	a.ID, c.ID = "a", "c"
	wantC, err := sc.Score([]*Frame{c}) // c alone, before the batcher runs
	if err != nil {
		t.Fatal(err)
	}
	// c is on its way (its body being read) all along: the worker waits for it
	arrC := b.Arrive()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.Submit(ctx, a); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request a: %v, want deadline exceeded", err)
	}
	r, err := b.submit(context.Background(), c, arrC)
	if err != nil || len(r.Scores) != 32*32 {
		t.Fatalf("request c: %v", err)
	}
	// a was gathered into the batch first: c's map must be c's own, not a's row
	compareMaps(t, "request c", wantC[0], r)
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(scored) != 1 || scored[0] != "c" {
		t.Errorf("scored %v, want only c", scored)
	}
}

// TestLoneRequestDoesNotWait: with nothing else on its way, a request goes to the forward
// at once instead of waiting max-wait for company (an hour here: the request's own 60 s
// deadline would end it first, as it did before arrivals were counted); with another
// request announced, the two share one forward.
func TestLoneRequestDoesNotWait(t *testing.T) {
	sc, err := OpenScorer(testRun, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	m := newMetrics(func() float64 { return 0 }, sc.Device())
	b, err := NewBatcher(sc, 4, time.Hour, 4, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := b.Submit(ctx, randomFrame(rng, 32, 32, sc.Bands)); err != nil {
		t.Fatalf("lone request: %v", err)
	}
	arr1, arr2 := b.Arrive(), b.Arrive()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); _, errs[0] = b.submit(ctx, randomFrame(rng, 32, 32, sc.Bands), arr1) }()
	for b.arriving.Load() != 1 && ctx.Err() == nil { // the first is queued; the worker waits for arr2
		time.Sleep(time.Millisecond)
	}
	go func() { defer wg.Done(); _, errs[1] = b.submit(ctx, randomFrame(rng, 32, 32, sc.Bands), arr2) }()
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("announced pair: %v, %v", errs[0], errs[1])
	}
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, sum := histCountSum(t, m); n != 2 || sum != 3 {
		t.Errorf("batches: %v forwards of %v frames in all, want 2 forwards (1 + 2 frames)", n, sum)
	}
}

// histCountSum is the batch-size histogram's number of forwards and of frames.
func histCountSum(t *testing.T, m *Metrics) (uint64, float64) {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "spectraclip_serve_batch_size" {
			h := f.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatal("no spectraclip_serve_batch_size metric")
	return 0, 0
}

// TestNotReadyBeforeWarmUp: before warm-up /healthz answers, /readyz and scoring say 503
// (with Retry-After); after it both are served.
func TestNotReadyBeforeWarmUp(t *testing.T) {
	s, err := open(Options{Run: testRun})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	h := s.Handler()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	body := npyBytes(t, randomFrame(rng, 32, 32, s.Scorer().Bands))
	do := func(method, path string, body []byte) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, path, bytes.NewReader(body)))
		return rec
	}
	if c := do("GET", "/healthz", nil).Code; c != 200 {
		t.Errorf("/healthz before warm-up: %d", c)
	}
	if c := do("GET", "/readyz", nil).Code; c != 503 {
		t.Errorf("/readyz before warm-up: %d", c)
	}
	if rec := do("POST", "/v1/score", body); rec.Code != 503 || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "warming up") {
		t.Errorf("scoring before warm-up: %d %q", rec.Code, rec.Body.String())
	}
	if err := s.WarmUp(); err != nil {
		t.Fatal(err)
	}
	if c := do("GET", "/readyz", nil).Code; c != 200 {
		t.Errorf("/readyz after warm-up: %d", c)
	}
	if rec := do("POST", "/v1/score", body); rec.Code != 200 {
		t.Errorf("scoring after warm-up: %d %q", rec.Code, rec.Body.String())
	}
}

// objectFrames builds, from the test run's own data, an empty tray (every pixel the
// tray's background spectrum), the same with fresh read noise of the generator's 0.004,
// and that with a 5×5 stone in it.
func objectFrames(t *testing.T, rng *rand.Rand) (empty, blank, object *Frame) {
	t.Helper()
	ds, err := dataset.Open(filepath.Join(filepath.Dir(testRun), "data"))
	if err != nil {
		t.Fatal(err)
	}
	var bg, stone []float32
	for _, fr := range ds.Frames {
		smp, err := ds.Load(fr.ID)
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range smp.ClassIDs {
			px := smp.Cube[i*smp.C : (i+1)*smp.C]
			if c == dataset.ClassBackground && bg == nil {
				bg = px
			}
			if c == dataset.ClassStone && stone == nil {
				stone = px
			}
		}
	}
	if bg == nil || stone == nil {
		t.Fatal("the test data has no background or no stone pixel")
	}
	h, w, c := 32, 32, len(bg)
	empty = &Frame{H: h, W: w, C: c, Data: make([]float32, h*w*c)}
	blank = &Frame{H: h, W: w, C: c, Data: make([]float32, h*w*c)}
	object = &Frame{H: h, W: w, C: c, Data: make([]float32, h*w*c)}
	for p := 0; p < h*w; p++ {
		y, x := p/w, p%w
		src := bg
		if y >= 14 && y < 19 && x >= 10 && x < 15 {
			src = stone
		}
		for b := 0; b < c; b++ {
			n := float32(rng.NormFloat64() * 0.004)
			empty.Data[p*c+b] = bg[b]
			blank.Data[p*c+b] = bg[b] + n
			object.Data[p*c+b] = src[b] + n
		}
	}
	return empty, blank, object
}

// topKMean is the image score recomputed in float64: the mean of the k highest values,
// k = max(1, ⌈fraction·n⌉).
func topKMean(v []float32, fraction float64) float64 {
	s := make([]float64, len(v))
	for i, x := range v {
		s[i] = float64(x)
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(s)))
	k := max(1, int(math.Ceil(fraction*float64(len(s)))))
	var m float64
	for _, x := range s[:k] {
		m += x
	}
	return m / float64(k)
}

// TestImageDecision: the image-level decision is the image score (top 0.1 % mean of the
// map, checked against a float64 recomputation) compared with a threshold: the default
// 0.5 without calibration, calibration.json's pixel threshold with it, --image-threshold
// over both. An empty tray decides false with no pixel counted (it used to decide true
// with every pixel counted: the quantile decider flags a constant map whole), the tray
// with a stone decides true and counts the decider's pixels, or with a calibrated
// threshold the pixels reaching it; a noisy empty tray decides false under a threshold
// calibrated above its score. A malformed calibration.json is an error naming it.
func TestImageDecision(t *testing.T) {
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	empty, blank, object := objectFrames(t, rng)
	score := func(sc *Scorer) []Result {
		t.Helper()
		r, err := sc.Score([]*Frame{empty, blank, object})
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range r {
			if want := topKMean(x.Scores, sc.Rule.TopKFraction); math.Abs(x.ImageScore-want) > 1e-6 {
				t.Errorf("frame %d: image score %v, float64 top-k mean %v", i, x.ImageScore, want)
			}
			if x.Decision != (float32(x.ImageScore) >= float32(sc.Rule.Threshold)) {
				t.Errorf("frame %d: decision %v for image score %v and threshold %v", i, x.Decision, x.ImageScore, sc.Rule.Threshold)
			}
			if !x.Decision && x.AnomalyPixels != 0 {
				t.Errorf("frame %d: decided normal with %d anomaly pixels", i, x.AnomalyPixels)
			}
		}
		return r
	}
	sc, err := OpenScorer(testRun, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Rule.Threshold != 0.5 || sc.Rule.TopKFraction != 0.001 || !strings.HasPrefix(sc.Rule.Source, "default") {
		t.Errorf("rule without calibration: %+v, want the default top 0.1 %% mean ≥ 0.5", sc.Rule)
	}
	r := score(sc)
	sc.Close()
	if r[0].Decision {
		t.Errorf("empty tray: decision true, %d pixels (image score %v), want false", r[0].AnomalyPixels, r[0].ImageScore)
	}
	flagged := 0
	for _, v := range r[2].Decisions {
		if v {
			flagged++
		}
	}
	if !r[2].Decision || r[2].AnomalyPixels != flagged || flagged == 0 {
		t.Errorf("tray with a stone: decision %v, %d pixels (image score %v), want true and the decider's %d", r[2].Decision, r[2].AnomalyPixels, r[2].ImageScore, flagged)
	}

	// the same over HTTP and gRPC: the answers carry the decision and its threshold
	_, url, gaddr := startServer(t, Options{})
	hc, err := client.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	gc := dialGRPC(t, gaddr)
	for _, c := range []client.Client{hc, gc} {
		for i, f := range []*Frame{empty, object} {
			got, err := c.Score(context.Background(), cubeOf(f), false)
			if err != nil {
				t.Fatal(err)
			}
			want := r[2*i]
			if got.Decision != want.Decision || got.ImageThreshold != 0.5 || got.AnomalyPixels != want.AnomalyPixels || got.ImageScore != want.ImageScore {
				t.Errorf("%T, frame %d: %+v, want decision %v, threshold 0.5, %d pixels, image score %v", c, i, got, want.Decision, want.AnomalyPixels, want.ImageScore)
			}
		}
	}

	// a calibrated run: the threshold halfway between the noisy tray's and the stone's scores
	runDir := filepath.Join(t.TempDir(), "run")
	if err := os.CopyFS(runDir, os.DirFS(testRun)); err != nil {
		t.Fatal(err)
	}
	thr := (r[1].ImageScore + r[2].ImageScore) / 2
	if err := os.WriteFile(filepath.Join(runDir, "calibration.json"), []byte(fmt.Sprintf(`{"pixel_threshold": %v, "f1_at_threshold": 0.5}`, thr)), 0o644); err != nil {
		t.Fatal(err)
	}
	sc, err = OpenScorer(runDir, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sc.Rule.Threshold != thr || sc.Rule.PixelThreshold != thr || sc.Rule.Source != "calibration.json pixel_threshold" {
		t.Errorf("calibrated rule: %+v, want threshold %v from calibration.json", sc.Rule, thr)
	}
	r = score(sc)
	sc.Close()
	above := 0
	for _, v := range r[2].Scores {
		if v >= float32(thr) {
			above++
		}
	}
	if r[0].Decision || r[1].Decision {
		t.Errorf("calibrated, trays without objects: decisions %v, %v", r[0].Decision, r[1].Decision)
	}
	if !r[2].Decision || r[2].AnomalyPixels != above || above == 0 {
		t.Errorf("calibrated, tray with a stone: decision %v, %d pixels, want true and the %d pixels ≥ %v", r[2].Decision, r[2].AnomalyPixels, above, thr)
	}

	// --image-threshold over calibration.json: above the stone's score, nothing is anomalous
	over := r[2].ImageScore + 0.01
	sc, err = OpenScorerWith(runDir, ScorerOptions{ImageThreshold: &over})
	if err != nil {
		t.Fatal(err)
	}
	r = score(sc)
	sc.Close()
	if sc.Rule.Threshold != over || r[2].Decision {
		t.Errorf("--image-threshold %v: rule %+v, stone frame decision %v", over, sc.Rule, r[2].Decision)
	}

	if err := os.WriteFile(filepath.Join(runDir, "calibration.json"), []byte(`{"pixel_threshold": "high"`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenScorer(runDir, "", 0, nil); err == nil || !strings.Contains(err.Error(), filepath.Join(runDir, "calibration.json")) {
		t.Errorf("a malformed calibration.json: %v, want an error naming it", err)
	}
}

// TestImageDecisionTwoStage: a run whose decider is a TwoStageBinaryDecider decides frames
// by that decider's own image gate (its top_k_fraction and image_threshold): the served
// decision is true exactly when the decider's map flags a pixel, and the pixel count is
// the map's, on an empty tray, a noisy one and one with a stone.
func TestImageDecisionTwoStage(t *testing.T) {
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: []string{
		"data.root=" + filepath.Join(filepath.Dir(testRun), "data"), "training.trainer.max_epochs=1", "+pipeline.detector.image_size=32", "training.threads=1",
		"pipeline.decider.type=TwoStageBinaryDecider", "+pipeline.decider.image_threshold=0.3", "+pipeline.decider.top_k_fraction=0.01",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trainer.Train(cfg, trainer.Options{OutDir: runDir}); err != nil {
		t.Fatal(err)
	}
	sc, err := OpenScorer(runDir, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if sc.Rule.TopKFraction != 0.01 || sc.Rule.Threshold != 0.3 || !strings.Contains(sc.Rule.Source, "TwoStageBinaryDecider") {
		t.Errorf("rule %+v, want the decider's gate (top 1 %% mean ≥ 0.3)", sc.Rule)
	}
	empty, blank, object := objectFrames(t, rand.New(rand.NewSource(time.Now().UnixNano())))
	r, err := sc.Score([]*Frame{empty, blank, object})
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range r {
		flagged := 0
		for _, v := range x.Decisions {
			if v {
				flagged++
			}
		}
		if x.Decision != (flagged > 0) || x.AnomalyPixels != flagged {
			t.Errorf("frame %d: decision %v with %d pixels (image score %v), the decider flags %d", i, x.Decision, x.AnomalyPixels, x.ImageScore, flagged)
		}
	}
	if r[0].Decision || !r[2].Decision {
		t.Errorf("empty tray %v (image score %v), tray with a stone %v (%v): want false, true", r[0].Decision, r[0].ImageScore, r[2].Decision, r[2].ImageScore)
	}
}

// TestPipelinedBatchesMixed: many concurrent requests through the two-stage batcher
// (frames copied into reused staging tensors while the previous batch runs) with two
// shapes, two sets of wavelengths and some requests whose deadline has already passed:
// every live request gets exactly the map of its frame scored alone, every expired one a
// deadline error, no batch mixes shapes or wavelengths (each would be scored wrongly),
// and the staging tensors never hold more than --max-batch frames.
func TestPipelinedBatchesMixed(t *testing.T) {
	sc, err := OpenScorer(testRun, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	otherWL := make([]float32, sc.Bands)
	for i := range otherWL {
		otherWL[i] = sc.Wavelengths[i] + 3.5
	}
	const n = 40
	frames := make([]*Frame, n)
	want := make([]Result, n)
	expired := make([]bool, n)
	for i := range frames {
		h, w := 32, 32
		if rng.Intn(3) == 0 {
			h, w = 24, 40
		}
		frames[i] = randomFrame(rng, h, w, sc.Bands)
		if rng.Intn(4) == 0 {
			frames[i].Wavelengths = otherWL
		}
		expired[i] = rng.Intn(6) == 0
		r, err := sc.Score([]*Frame{frames[i]}) // the reference, alone, before the batcher runs
		if err != nil {
			t.Fatal(err)
		}
		want[i] = r[0]
	}
	m := newMetrics(func() float64 { return 0 }, sc.Device())
	const maxBatch = 3
	b, err := NewBatcher(sc, maxBatch, 20*time.Millisecond, n, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range frames {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if expired[i] {
				ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
			}
			defer cancel()
			got[i], errs[i] = b.Submit(ctx, frames[i])
		}(i)
	}
	wg.Wait()
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	live := 0
	for i := range frames {
		if expired[i] {
			if !errors.Is(errs[i], context.DeadlineExceeded) {
				t.Errorf("request %d (expired): %v, want deadline exceeded", i, errs[i])
			}
			continue
		}
		live++
		if errs[i] != nil {
			t.Errorf("request %d: %v", i, errs[i])
			continue
		}
		compareMaps(t, fmt.Sprintf("request %d (%d×%d, own wavelengths %v)", i, frames[i].H, frames[i].W, frames[i].Wavelengths == nil), want[i], got[i])
	}
	forwards, sum := histCountSum(t, m)
	if int(sum) != live || forwards == 0 {
		t.Errorf("%v forwards of %v frames in all, want the %d live requests", forwards, sum, live)
	}
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "spectraclip_serve_batch_size" {
			for _, bk := range f.GetMetric()[0].GetHistogram().GetBucket() {
				if bk.GetUpperBound() >= maxBatch && bk.GetCumulativeCount() != forwards {
					t.Errorf("%d of %d forwards had more than --max-batch %d frames", forwards-bk.GetCumulativeCount(), forwards, maxBatch)
				}
			}
		}
	}
}
