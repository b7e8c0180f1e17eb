package serve

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/report"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/serve/servepb"
	"github.com/spectraclip/spectraclip/torch"
)

// Options configure a server.
type Options struct {
	Run      string        // run directory
	Device   string        // "" = the run's own
	Bands    int           // band count when the run's data root is gone
	MaxBatch int           // frames per forward (default 8)
	MaxWait  time.Duration // longest a request waits for others to join its batch (0: the default 5ms; NoWait: never)
	Queue    int           // requests that may wait (default 64)
	MaxBytes int64         // largest cube in bytes (default 256 MiB)
	Timeout  time.Duration // per-request deadline when the client sets none (default 30s)
	PProf    bool          // serve net/http/pprof under /debug/pprof/ on the HTTP address
	// Workers is the number of forward stages, each with its own copy of the pipeline, that
	// score batches at the same time (0: 2 on a CPU with two cores or more, else 1).
	Workers int
	// Threads is LibTorch's intra-op threads, used by each worker (0: the CPU cores
	// shared out among the workers, at least 1).
	Threads int
	// ShmDir, when set, lets requests name their cube's values in a file of this folder
	// instead of carrying them (shm.go); "" turns shared memory off.
	ShmDir string
	// ImageThreshold, when set, overrides the image-level decision threshold (ImageRule).
	ImageThreshold *float64
	Log            *logrus.Logger
	// MaxInflight is the memory, in bytes, that all requests being read, queued or scored
	// may hold together (budget.go); more are answered 503 before their bodies are read
	// (default: DefaultInflightMB MiB, at least MaxBytes).
	MaxInflight int64
	// Token, when set, is the bearer token every request but health checks must carry (auth.go).
	Token string
	// TLS, when set, serves HTTPS and gRPC over TLS.
	TLS *tls.Config
}

func (o *Options) defaults() {
	if o.MaxBatch == 0 {
		o.MaxBatch = 8
	}
	if o.MaxWait == 0 {
		o.MaxWait = 5 * time.Millisecond
	}
	if o.Queue == 0 {
		o.Queue = 64
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 256 << 20
	}
	if o.MaxInflight == 0 {
		o.MaxInflight = max(DefaultInflightMB<<20, o.MaxBytes)
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = logrus.New()
		o.Log.SetOutput(io.Discard)
	}
}

// NoWait as Options.MaxWait: a request never waits for others to join its batch (it
// still shares a forward with those already queued).
const NoWait time.Duration = -1

// Server serves one run's pipeline over HTTP and gRPC.
type Server struct {
	opts    Options
	sc      *Scorer   // workers[0]
	workers []*Scorer // one pipeline copy per forward stage
	b       *Batcher
	m       *Metrics
	budget  *budget // the in-flight byte budget (budget.go)
	live    *liveView
	ready   atomic.Bool // warmed up and not shutting down (/readyz)
	warm    atomic.Bool // warmed up
	health  *health.Server
	grpcSrv *grpc.Server
	httpSrv *http.Server
	flight  inFlight // requests in progress, for a drain cut short (drain.go)

	closeOnce sync.Once
	closeErr  error
}

// ErrNotReady answers requests that come while the pipeline warms up.
var ErrNotReady = errors.New("not ready: the pipeline is warming up, retry later")

// New opens the run, warms the pipeline up (one frame, then a full batch) and returns a
// ready server that is not yet listening.
func New(o Options) (*Server, error) {
	s, err := open(o)
	if err != nil {
		return nil, err
	}
	if err := s.WarmUp(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks o as New takes it, zero fields standing for their defaults, and opens
// nothing: the run is required, the sizes are bounded by Flags.Check (its errors, naming
// serve's flags; the byte sizes in MiB, rounded up) and ShmDir must be a folder. It is the
// one check of a server's options: New runs it, and serve's command before it listens.
func (o Options) Validate() error {
	o.defaults()
	if o.Run == "" {
		return errors.New("--run is required")
	}
	mib := func(b int64) int64 { return b>>20 + min(b&(1<<20-1), 1) }
	f := Flags{MaxBatch: o.MaxBatch, Queue: o.Queue, Workers: o.Workers, Threads: o.Threads,
		MaxWait: max(o.MaxWait, 0), Timeout: o.Timeout, MaxCubeMB: mib(o.MaxBytes), MaxInflightMB: mib(o.MaxInflight)}
	if err := f.Check(); err != nil {
		return err
	}
	if o.ShmDir != "" {
		if st, err := os.Stat(o.ShmDir); err != nil || !st.IsDir() {
			return fmt.Errorf("--shm-dir %s: not a folder", o.ShmDir)
		}
	}
	return nil
}

// open opens the run and builds the server, not yet warmed up (not ready).
func open(o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	if err := requireFinished(o.Run); err != nil {
		return nil, err
	}
	// The placement is resolved once, before any scorer opens: the device (--device over the
	// run's training.device) decides the default worker count, which shares the cores.
	cfg, err := run.LoadConfig(o.Run)
	if err != nil {
		return nil, err
	}
	req := run.Request{Device: o.Device, DeviceFrom: "--device", Threads: o.Threads, ThreadsFrom: "--threads"}
	pl, err := run.Place(cfg, req)
	if err != nil {
		return nil, err
	}
	if o.Workers == 0 {
		o.Workers = 1
		if pl.Device.Type == torch.DeviceCPU && runtime.NumCPU() >= 2 {
			o.Workers = 2
		}
	}
	if o.Threads == 0 {
		// serve's own automatic count (not the run's training.threads): the cores shared
		// by the workers
		o.Threads = run.AutoThreads(o.Workers)
		pl.Threads = o.Threads
	}
	so := ScorerOptions{Placed: &pl, Config: cfg, Bands: o.Bands, ImageThreshold: o.ImageThreshold, Log: o.Log}
	s := &Server{opts: o, live: newLiveView(8), budget: newBudget(o.MaxInflight)}
	for len(s.workers) < o.Workers {
		w, err := OpenScorerWith(o.Run, so)
		if err != nil {
			s.closeScorers()
			return nil, err
		}
		s.workers = append(s.workers, w)
	}
	sc := s.workers[0]
	s.sc = sc
	o.Log.Infof("%d forward worker(s) × %d LibTorch thread(s) on %s", o.Workers, o.Threads, sc.Device())
	if o.ShmDir != "" {
		o.Log.Infof("shared memory on: requests may name their cube's values in a file of %s", o.ShmDir)
	}
	if b := torch.BLAS(); sc.Device().Type == torch.DeviceCPU {
		if w := b.Warning(); w != "" {
			o.Log.Warn(w)
		} else {
			o.Log.Infof("BLAS: %s %s", b.Kind, b.Path)
		}
	}
	s.m = newMetricsWorkers(func() float64 {
		if s.b == nil {
			return 0
		}
		return float64(s.b.QueueDepth())
	}, sc.Device(), len(s.workers))
	s.b, err = NewBatcherWorkers(s.workers, o.MaxBatch, max(o.MaxWait, 0), o.Queue, s.m, s.live.add)
	if err != nil {
		s.closeScorers()
		return nil, err
	}
	s.health = health.NewServer()
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	s.health.SetServingStatus(servepb.Scorer_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	gopts := []grpc.ServerOption{grpc.MaxRecvMsgSize(int(o.MaxBytes) + (1 << 20)), grpc.MaxSendMsgSize(1 << 30), grpc.ForceServerCodecV2(requestCodec{b: s.budget}), experimental.BufferPool(&dirtyPool{}),
		// cubes are megabytes: wide flow-control windows and buffers save round trips
		grpc.InitialWindowSize(32 << 20), grpc.InitialConnWindowSize(64 << 20), grpc.ReadBufferSize(1 << 20), grpc.WriteBufferSize(1 << 20)}
	if o.Token != "" {
		gopts = append(gopts, grpcAuth(o.Token)...)
	}
	if o.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(o.TLS.Clone())))
	}
	gopts = append(gopts, grpc.StatsHandler(&s.flight))
	s.grpcSrv = grpc.NewServer(gopts...)
	servepb.RegisterScorerServer(s.grpcSrv, &grpcScorer{s: s})
	healthpb.RegisterHealthServer(s.grpcSrv, s.health)
	reflection.Register(s.grpcSrv)
	s.httpSrv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ConnState: s.flight.connState}
	return s, nil
}

// WarmUp runs the pipeline on synthetic frames (one, then a full batch) and then marks
// the server ready (/readyz, gRPC health SERVING). Scoring requests before that get
// ErrNotReady. On failure the server is shut down.
func (s *Server) WarmUp() error {
	if err := s.warmUp(); err != nil {
		s.Shutdown(context.Background())
		return fmt.Errorf("warm-up: %w", err)
	}
	s.opts.Log.Infof("image-level decision: %s", s.sc.Rule)
	s.warm.Store(true)
	s.ready.Store(true)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(servepb.Scorer_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return nil
}

// Scorer is the server's scorer (band count, wavelengths).
func (s *Server) Scorer() *Scorer { return s.sc }

// Metrics are the server's metrics.
func (s *Server) Metrics() *Metrics { return s.m }

func (s *Server) warmUp() error {
	h, w := s.sc.FrameH, s.sc.FrameW
	if h == 0 {
		h, w = 64, 64
	}
	rng := rand.New(rand.NewSource(1))
	mk := func() *Frame {
		f := &Frame{H: h, W: w, C: s.sc.Bands, Data: make([]float32, h*w*s.sc.Bands)}
		for i := range f.Data {
			f.Data[i] = rng.Float32()
		}
		return f
	}
	for _, sc := range s.workers {
		if _, err := sc.Score([]*Frame{mk()}); err != nil {
			return err
		}
		// a full batch, of at most the run's frames that fit in the in-flight budget: a
		// batch of more could never fill (each request holds its frame in the budget)
		n := s.opts.MaxBatch
		if fb := 4 * int64(h) * int64(w) * int64(s.sc.Bands); fb > 0 && s.opts.MaxInflight > 0 {
			n = int(min(int64(n), max(1, s.opts.MaxInflight/fb)))
		}
		if n > 1 {
			fs := make([]*Frame, n)
			for i := range fs {
				fs[i] = mk()
			}
			if _, err := sc.Score(fs); err != nil {
				return err
			}
		}
	}
	return nil
}

// closeScorers frees every worker's pipeline.
func (s *Server) closeScorers() {
	for _, w := range s.workers {
		w.Close()
	}
}

// Serve serves HTTP on httpLn and gRPC on grpcLn (either may be nil) until Shutdown.
func (s *Server) Serve(httpLn, grpcLn net.Listener) error {
	errc := make(chan error, 2)
	n := 0
	if httpLn != nil {
		n++
		go func() {
			var err error
			if s.opts.TLS != nil {
				s.httpSrv.TLSConfig = s.opts.TLS.Clone()
				err = s.httpSrv.ServeTLS(httpLn, "", "")
			} else {
				err = s.httpSrv.Serve(httpLn)
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errc <- err
		}()
	}
	if grpcLn != nil {
		n++
		go func() {
			err := s.grpcSrv.Serve(grpcLn)
			if errors.Is(err, grpc.ErrServerStopped) {
				err = nil // shut down before it started serving: like http.ErrServerClosed
			}
			errc <- err
		}()
	}
	var first error
	for i := 0; i < n; i++ {
		if err := <-errc; err != nil && first == nil {
			first = err
			go s.Shutdown(context.Background())
		}
	}
	return first
}

// Shutdown stops accepting requests, answers those in flight and queued (until ctx ends,
// then cuts the rest off), and frees the pipeline. When ctx ends first, it is an error only
// if a request received in full was not answered; requests still arriving are cut off with
// a warning (drainVerdict).
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.ready.Store(false)
		s.health.Shutdown()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() { s.grpcSrv.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				s.flight.noteCut() // before the cut
				s.grpcSrv.Stop()
				<-done
			}
		}()
		err := s.httpSrv.Shutdown(ctx)
		if ctx.Err() != nil {
			s.flight.noteCut()
			s.httpSrv.Close()
		}
		wg.Wait()
		if berr := s.b.Close(ctx); err == nil {
			err = berr
		}
		if ctx.Err() != nil {
			err = s.drainVerdict()
		}
		if ctx.Err() == nil {
			s.closeScorers()
		}
		s.closeErr = err
	})
	return s.closeErr
}

// Score scores one frame through the batcher, with the per-request deadline applied.
func (s *Server) Score(ctx context.Context, f *Frame) (Result, error) {
	return s.score(ctx, f, nil)
}

// score is Score for a request whose arrival (may be nil) was noted with Batcher.Arrive.
func (s *Server) score(ctx context.Context, f *Frame, a *Arrival) (Result, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.Timeout)
		defer cancel()
	}
	if !s.warm.Load() {
		a.Done()
		f.release()
		s.m.error("not_ready")
		return Result{}, ErrNotReady
	}
	s.flight.scoring.Add(1)
	defer s.flight.scoring.Add(-1)
	t0 := time.Now()
	r, err := s.b.submit(ctx, f, a)
	s.m.stage("total", time.Since(t0))
	if err != nil {
		s.m.error(causeOf(err))
	}
	return r, err
}

// Handler is the HTTP API: POST /v1/score, GET /healthz, /readyz, /metrics, / (live page)
// and /v1/live (its data).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/score", s.handleScore)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /v1/live", s.live.handleJSON)
	mux.HandleFunc("GET /{$}", handlePage)
	if s.opts.PProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if s.opts.Token != "" {
		return requireToken(mux, s.opts.Token) // auth.go
	}
	return mux
}

// scoreJSON is the JSON answer of POST /v1/score.
type scoreJSON struct {
	FrameID        string  `json:"frame_id,omitempty"`
	ImageScore     float64 `json:"image_score"`
	ImageThreshold float64 `json:"image_threshold"`
	Decision       bool    `json:"decision"`
	AnomalyPixels  int     `json:"anomaly_pixels"`
	Height         int     `json:"height"`
	Width          int     `json:"width"`
}

// jsonCube is the JSON request form: metadata plus base64 raw little-endian values.
type jsonCube struct {
	Shape       []int64   `json:"shape"`
	DType       string    `json:"dtype"`
	Data        []byte    `json:"data"`
	Wavelengths []float32 `json:"wavelengths"`
	FrameID     string    `json:"frame_id"`
	// instead of data: the values in the server's shared-memory folder (shm.go)
	Shm *struct {
		Name   string `json:"name"`
		Offset uint64 `json:"offset"`
	} `json:"shm"`
}

func (s *Server) handleScore(w http.ResponseWriter, r *http.Request) {
	s.m.request("http")
	// while this body is read, a batch that is not full waits for it (up to --max-wait)
	arr := s.b.Arrive()
	defer arr.Done()
	t0 := time.Now()
	q := r.URL.Query()
	// the query first: a bad parameter is answered before the body is read
	id := q.Get("frame_id")
	mapKind := q.Get("map")
	switch mapKind {
	case "", "none", "npy", "decisions", "png":
	default:
		s.m.error("bad_request")
		http.Error(w, fmt.Sprintf("map=%q: want none, npy, decisions or png", mapKind), http.StatusBadRequest)
		return
	}
	var wls []float32
	if wl := q.Get("wavelengths"); wl != "" {
		for _, p := range strings.Split(wl, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(p), 32)
			if err != nil {
				s.m.error("bad_request")
				http.Error(w, "wavelengths: "+err.Error(), http.StatusBadRequest)
				return
			}
			wls = append(wls, float32(v))
		}
	}
	ctx := r.Context()
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			s.m.error("bad_request")
			http.Error(w, fmt.Sprintf("timeout %q: want a positive duration like 500ms", t), http.StatusBadRequest)
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	// the body within the in-flight budget (body.go, budget.go), held until answered
	mem := s.budget.reserve()
	defer mem.release()
	f, jsonID, code, err := s.readFrame(w, r, mem)
	if err != nil {
		cause := "bad_request"
		switch code {
		case http.StatusRequestEntityTooLarge:
			cause = "too_large"
		case http.StatusForbidden:
			cause = "forbidden"
		case http.StatusServiceUnavailable:
			cause = "busy"
			w.Header().Set("Retry-After", "1")
		}
		s.m.error(cause)
		http.Error(w, err.Error(), code)
		return
	}
	if id == "" {
		id = jsonID
	}
	f.ID = id
	if wls != nil {
		f.Wavelengths = wls
	}
	s.m.stage("decode", time.Since(t0))
	res, err := s.score(ctx, f, arr)
	if err != nil {
		writeHTTPError(w, err)
		return
	}
	t1 := time.Now()
	defer func() { s.m.stage("encode", time.Since(t1)) }()
	h := w.Header()
	h.Set("X-Spectraclip-Image-Score", strconv.FormatFloat(res.ImageScore, 'g', -1, 64))
	h.Set("X-Spectraclip-Image-Threshold", strconv.FormatFloat(s.sc.Rule.Threshold, 'g', -1, 64))
	h.Set("X-Spectraclip-Decision", strconv.FormatBool(res.Decision))
	h.Set("X-Spectraclip-Anomaly-Pixels", strconv.Itoa(res.AnomalyPixels))
	if id != "" {
		h.Set("X-Spectraclip-Frame-Id", id)
	}
	switch mapKind {
	case "", "none":
		writeJSON(w, scoreJSON{FrameID: id, ImageScore: res.ImageScore, ImageThreshold: s.sc.Rule.Threshold, Decision: res.Decision, AnomalyPixels: res.AnomalyPixels, Height: res.H, Width: res.W})
	case "npy":
		h.Set("Content-Type", "application/x-npy")
		dataset.EncodeNPY(w, res.Scores, res.H, res.W)
	case "decisions":
		u8 := make([]uint8, res.H*res.W)
		for i, v := range res.Decisions {
			if v {
				u8[i] = 1
			}
		}
		h.Set("Content-Type", "application/x-npy")
		dataset.EncodeNPY(w, u8, res.H, res.W)
	case "png":
		img, err := report.Heatmap(res.Scores, res.H, res.W)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		h.Set("Content-Type", "image/png")
		png.Encode(w, img)
	}
}

func writeHTTPError(w http.ResponseWriter, err error) {
	var br *BadRequestError
	switch {
	case errors.Is(err, ErrQueueFull):
		w.Header().Set("Retry-After", "1")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case errors.Is(err, ErrShuttingDown), errors.Is(err, ErrNotReady):
		w.Header().Set("Retry-After", "5")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	case errors.As(err, &br):
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
	case errors.Is(err, context.DeadlineExceeded):
		http.Error(w, "deadline exceeded before the frame was scored", http.StatusGatewayTimeout)
	case errors.Is(err, context.Canceled):
		http.Error(w, "request canceled", 499)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func grpcError(err error) error {
	var br *BadRequestError
	switch {
	case errors.Is(err, ErrQueueFull):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, ErrShuttingDown), errors.Is(err, ErrNotReady):
		return status.Error(codes.Unavailable, err.Error())
	case errors.As(err, &br):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded before the frame was scored")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// liveView keeps the last frames' maps and decisions for the live page.
type liveView struct {
	mu     sync.Mutex
	n      int
	frames []liveFrame
	times  []time.Time // completion times of the last frames, for the throughput
	total  int64
}

type liveFrame struct {
	id       string
	score    float64
	decision bool
	pixels   int
	h, w     int
	scores   []float32
	at       time.Time
}

func newLiveView(n int) *liveView { return &liveView{n: n} }

func (l *liveView) add(f *Frame, r *Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.total++
	l.times = append(l.times, now)
	if len(l.times) > 512 {
		l.times = l.times[len(l.times)-512:]
	}
	l.frames = append(l.frames, liveFrame{id: f.ID, score: r.ImageScore, decision: r.Decision, pixels: r.AnomalyPixels, h: r.H, w: r.W, scores: r.Scores, at: now})
	if len(l.frames) > l.n {
		l.frames = l.frames[len(l.frames)-l.n:]
	}
}

func (l *liveView) handleJSON(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	frames := append([]liveFrame(nil), l.frames...)
	now := time.Now()
	win := 0
	for _, t := range l.times {
		if now.Sub(t) <= 10*time.Second {
			win++
		}
	}
	total := l.total
	l.mu.Unlock()
	type fj struct {
		ID       string  `json:"id"`
		Score    float64 `json:"score"`
		Decision bool    `json:"decision"`
		Pixels   int     `json:"anomaly_pixels"`
		H        int     `json:"height"`
		W        int     `json:"width"`
		Map      string  `json:"map_png"`
		At       string  `json:"at"`
	}
	out := struct {
		Frames []fj    `json:"frames"`
		FPS    float64 `json:"fps"`
		Total  int64   `json:"total"`
	}{FPS: float64(win) / 10, Total: total}
	for i := len(frames) - 1; i >= 0; i-- {
		f := frames[i]
		j := fj{ID: f.id, Score: f.score, Decision: f.decision, Pixels: f.pixels, H: f.h, W: f.w, At: f.at.UTC().Format(time.RFC3339Nano)}
		if img, err := report.Heatmap(f.scores, f.h, f.w); err == nil {
			var b strings.Builder
			enc := base64.NewEncoder(base64.StdEncoding, &b)
			if png.Encode(enc, img) == nil {
				enc.Close()
				j.Map = "data:image/png;base64," + b.String()
			}
		}
		out.Frames = append(out.Frames, j)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, out)
}

// writeJSON answers v as JSON, or 500 naming the encoding error (a NaN, say) instead of a
// 200 with an empty or half-written body.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "encoding the answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}
