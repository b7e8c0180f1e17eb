// Package client talks to a spectraclip scoring server (spectraclip serve) over HTTP or gRPC.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // the codec rawCodec delegates to
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/spectraclip/spectraclip/serve/servepb"
)

// Cube is one frame to score: shape (H, W, C), raw little-endian values of DType.
type Cube struct {
	Shape       []int64
	DType       string // float32 (default), float64, uint16, uint8
	Data        []byte
	Wavelengths []float32
	FrameID     string
	// Shm, instead of Data, names the values (float32) in a file of the server's
	// shared-memory folder (serve --shm-dir), for a client on the server's machine: see
	// WriteShm. The file must not change until the answer has arrived.
	Shm *ShmRef
}

// ShmRef is a cube's values in the server's shared-memory folder: a file name (no folders)
// and the byte offset of the first value.
type ShmRef struct {
	Name   string `json:"name"`
	Offset uint64 `json:"offset"`
}

// WriteShm writes the values of c (float32) into the file name of dir (the server's
// --shm-dir, on the same machine; created or replaced) and returns the cube that refers to
// them instead of carrying them.
func WriteShm(dir, name string, c *Cube) (*Cube, error) {
	if c.DType != "" && c.DType != "float32" {
		return nil, fmt.Errorf("shm: dtype %q: shared memory takes float32 only", c.DType)
	}
	if name == "" || strings.ContainsAny(name, "/\\") || strings.HasPrefix(name, ".") {
		return nil, fmt.Errorf("shm name %q: want a plain file name", name)
	}
	if err := os.WriteFile(filepath.Join(dir, name), c.Data, 0o600); err != nil {
		return nil, fmt.Errorf("shm: %w", err)
	}
	r := *c
	r.Data, r.DType, r.Shm = nil, "float32", &ShmRef{Name: name}
	return &r, nil
}

// Float32Cube packs float32 values (H×W×C, channels last).
func Float32Cube(h, w, c int, v []float32) *Cube {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return &Cube{Shape: []int64{int64(h), int64(w), int64(c)}, DType: "float32", Data: b}
}

// Result is a server's answer for one frame.
type Result struct {
	FrameID        string    `json:"frame_id,omitempty"`
	ImageScore     float64   `json:"image_score"`
	ImageThreshold float64   `json:"image_threshold"` // decision = image_score ≥ image_threshold
	Decision       bool      `json:"decision"`
	AnomalyPixels  int       `json:"anomaly_pixels"`
	Height         int       `json:"height"`
	Width          int       `json:"width"`
	Scores         []float32 `json:"-"` // with WantMap
	Decisions      []bool    `json:"-"` // with WantMap
}

// Client scores cubes on a server.
type Client interface {
	Score(ctx context.Context, c *Cube, wantMap bool) (*Result, error)
	Close() error
}

// Dial connects to addr: "grpc://host:port" uses gRPC, "http://host:port" (or a bare
// host:port) uses HTTP.
func Dial(addr string) (Client, error) {
	return DialWith(addr, Options{})
}

// Options are a client's credentials for a secured server (serve --token-file, --tls-cert).
type Options struct {
	// Token is sent as "Authorization: Bearer Token" (HTTP header, gRPC metadata).
	Token string
	// TLS, when set, makes the connection TLS (RootCAs: the server's CA; nil: the
	// system's). "https://" and "grpcs://" addresses use TLS with the system's roots
	// without it.
	TLS *tls.Config
}

// DialWith is Dial with credentials: "grpcs://host:port" is gRPC over TLS, "https://" HTTP
// over TLS; o.TLS makes grpc:// and http:// addresses TLS too.
func DialWith(addr string, o Options) (Client, error) {
	if rest, ok := strings.CutPrefix(addr, "grpcs://"); ok {
		if o.TLS == nil {
			o.TLS = &tls.Config{}
		}
		return DialGRPCWith(rest, o)
	}
	if rest, ok := strings.CutPrefix(addr, "grpc://"); ok {
		return DialGRPCWith(rest, o)
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("--server %q: want http://HOST:PORT, https://HOST:PORT, grpc://HOST:PORT or grpcs://HOST:PORT", addr)
	}
	t := newTransport()
	if o.TLS != nil {
		u.Scheme = "https"
		t.TLSClientConfig = o.TLS.Clone()
	}
	return &HTTP{Base: strings.TrimRight(u.String(), "/"), C: &http.Client{Transport: t}, Token: o.Token}, nil
}

// newTransport is an HTTP transport for megabyte bodies: idle connections kept for many
// concurrent clients (the default keeps 2, so a load test with more would reconnect for
// every request) and large write buffers (the default 4 KiB means a syscall per 4 KiB).
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	t.WriteBufferSize = 1 << 20
	t.ReadBufferSize = 64 << 10
	return t
}

// Prepared is a request encoded once, to be sent many times (a load test's), so that
// the sender spends no CPU re-encoding the cube.
type Prepared interface {
	Send(ctx context.Context) (*Result, error)
}

// Preparer is a client that can encode a request once for many sends.
type Preparer interface {
	Prepare(c *Cube, wantMap bool) (Prepared, error)
}

// HTTP is the HTTP client (POST /v1/score with a JSON body).
type HTTP struct {
	Base  string
	C     *http.Client
	Token string // sent as "Authorization: Bearer Token" when set
}

// StatusError is a non-200 answer.
type StatusError struct {
	Code       int
	RetryAfter time.Duration
	Msg        string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.Code, strings.TrimSpace(e.Msg))
}

// Score posts one cube as a .npy body (float32 cubes; other dtypes go as JSON with
// base64 data). With wantMap it asks for the score map (.npy) and reads the summary from
// the answer's headers.
func (h *HTTP) Score(ctx context.Context, c *Cube, wantMap bool) (*Result, error) {
	p, err := h.prepare(c, wantMap, false)
	if err != nil {
		return nil, err
	}
	return p.Send(ctx)
}

// Prepare encodes the request body once (header and values in one buffer).
func (h *HTTP) Prepare(c *Cube, wantMap bool) (Prepared, error) {
	return h.prepare(c, wantMap, true)
}

type httpPrepared struct {
	h       *HTTP
	c       *Cube
	u       string // URL with every parameter but the timeout
	ctype   string
	parts   [][]byte // the body, in parts
	n       int64
	wantMap bool
}

func (h *HTTP) prepare(c *Cube, wantMap, joined bool) (*httpPrepared, error) {
	q := url.Values{}
	if c.FrameID != "" {
		q.Set("frame_id", c.FrameID)
	}
	if wantMap {
		q.Set("map", "npy")
	}
	p := &httpPrepared{h: h, c: c, ctype: "application/x-npy", wantMap: wantMap}
	if c.Shm != nil {
		b, err := json.Marshal(map[string]any{"shape": c.Shape, "dtype": c.DType, "shm": c.Shm, "wavelengths": c.Wavelengths, "frame_id": c.FrameID})
		if err != nil {
			return nil, err
		}
		p.parts, p.ctype = [][]byte{b}, "application/json"
	} else if (c.DType == "" || c.DType == "float32") && len(c.Shape) == 3 {
		if len(c.Wavelengths) > 0 {
			wl := make([]string, len(c.Wavelengths))
			for i, v := range c.Wavelengths {
				wl[i] = strconv.FormatFloat(float64(v), 'g', -1, 32)
			}
			q.Set("wavelengths", strings.Join(wl, ","))
		}
		p.parts = [][]byte{npyHeader(c.Shape), c.Data}
		if joined {
			p.parts = [][]byte{append(append(make([]byte, 0, len(p.parts[0])+len(c.Data)), p.parts[0]...), c.Data...)}
		}
	} else {
		b, err := json.Marshal(map[string]any{"shape": c.Shape, "dtype": c.DType, "data": c.Data, "wavelengths": c.Wavelengths, "frame_id": c.FrameID})
		if err != nil {
			return nil, err
		}
		p.parts, p.ctype = [][]byte{b}, "application/json"
	}
	for _, b := range p.parts {
		p.n += int64(len(b))
	}
	p.u = h.Base + "/v1/score"
	if len(q) > 0 {
		p.u += "?" + q.Encode()
	}
	return p, nil
}

// Send posts the prepared body and reads the answer.
func (p *httpPrepared) Send(ctx context.Context) (*Result, error) {
	u := p.u
	if dl, ok := ctx.Deadline(); ok {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + "timeout=" + url.QueryEscape(time.Until(dl).String())
	}
	rs := make([]io.Reader, len(p.parts))
	for i, b := range p.parts {
		rs[i] = bytes.NewReader(b)
	}
	body := rs[0]
	if len(rs) > 1 {
		body = io.MultiReader(rs...)
	}
	req, err := http.NewRequestWithContext(ctx, "POST", u, body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = p.n // a known length: no chunked encoding
	req.Header.Set("Content-Type", p.ctype)
	if p.h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.h.Token)
	}
	resp, err := p.h.C.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	c := p.c
	if resp.StatusCode != 200 {
		se := &StatusError{Code: resp.StatusCode, Msg: string(b)}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			se.RetryAfter = time.Duration(s) * time.Second
		}
		return nil, se
	}
	r := &Result{FrameID: c.FrameID}
	if !p.wantMap {
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("server answer: %w", err)
		}
		return r, nil
	}
	hd := resp.Header
	r.ImageScore, _ = strconv.ParseFloat(hd.Get("X-Spectraclip-Image-Score"), 64)
	r.ImageThreshold, _ = strconv.ParseFloat(hd.Get("X-Spectraclip-Image-Threshold"), 64)
	r.Decision = hd.Get("X-Spectraclip-Decision") == "true"
	r.AnomalyPixels, _ = strconv.Atoi(hd.Get("X-Spectraclip-Anomaly-Pixels"))
	if len(c.Shape) == 3 {
		r.Height, r.Width = int(c.Shape[0]), int(c.Shape[1])
	}
	n := r.Height * r.Width
	if len(b) < 4*n {
		return nil, fmt.Errorf("server answer: %d bytes for a %d×%d map", len(b), r.Height, r.Width)
	}
	raw := b[len(b)-4*n:] // the .npy header is padded before the data
	r.Scores = make([]float32, n)
	for i := range r.Scores {
		r.Scores[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return r, nil
}

// npyHeader is the .npy (format 1.0) header of a little-endian float32 C-order array.
func npyHeader(shape []int64) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.FormatInt(d, 10)
	}
	hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", strings.Join(dims, ", "))
	pad := 64 - (10+len(hdr)+1)%64
	if pad == 64 {
		pad = 0
	}
	hdr += strings.Repeat(" ", pad) + "\n"
	b := []byte("\x93NUMPY\x01\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(hdr)))
	return append(b, hdr...)
}

// Close does nothing for HTTP.
func (h *HTTP) Close() error { return nil }

// GRPC is the gRPC client.
type GRPC struct {
	conn *grpc.ClientConn
	C    servepb.ScorerClient
}

// DialGRPC connects to a server's gRPC address (plaintext; loopback or a trusted network).
func DialGRPC(addr string) (*GRPC, error) {
	return DialGRPCWith(addr, Options{})
}

// DialGRPCWith connects to a server's gRPC address with credentials: TLS when o.TLS is
// set, the token as metadata "authorization: Bearer …" on every call.
func DialGRPCWith(addr string, o Options) (*GRPC, error) {
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS.Clone())
	}
	dopts := []grpc.DialOption{grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30), grpc.MaxCallSendMsgSize(1<<30)),
		grpc.WithInitialWindowSize(32 << 20), grpc.WithInitialConnWindowSize(64 << 20), grpc.WithReadBufferSize(1 << 20), grpc.WithWriteBufferSize(1 << 20)}
	if o.Token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer(o.Token)))
	}
	conn, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("grpc %s: %w", addr, err)
	}
	return &GRPC{conn: conn, C: servepb.NewScorerClient(conn)}, nil
}

// Request builds the protobuf request for a cube.
func Request(c *Cube, wantMap bool) *servepb.ScoreRequest {
	r := &servepb.ScoreRequest{Cube: &servepb.Cube{Shape: c.Shape, Dtype: c.DType, Data: c.Data, Wavelengths: c.Wavelengths}, FrameId: c.FrameID, WantMap: wantMap}
	if c.Shm != nil {
		r.Cube.Data, r.Cube.Shm = nil, &servepb.SharedMemory{Name: c.Shm.Name, Offset: c.Shm.Offset}
	}
	return r
}

// ResultOf converts a protobuf response.
func ResultOf(p *servepb.ScoreResponse) *Result {
	r := &Result{FrameID: p.GetFrameId(), ImageScore: p.GetImageScore(), ImageThreshold: p.GetImageThreshold(), Decision: p.GetDecision(), AnomalyPixels: int(p.GetAnomalyPixels()), Height: int(p.GetHeight()), Width: int(p.GetWidth())}
	if s := p.GetScores(); len(s) > 0 {
		r.Scores = make([]float32, len(s)/4)
		for i := range r.Scores {
			r.Scores[i] = math.Float32frombits(binary.LittleEndian.Uint32(s[4*i:]))
		}
		r.Decisions = make([]bool, len(p.GetDecisions()))
		for i, v := range p.GetDecisions() {
			r.Decisions[i] = v != 0
		}
	}
	return r
}

// Score scores one cube with the unary RPC.
func (g *GRPC) Score(ctx context.Context, c *Cube, wantMap bool) (*Result, error) {
	p, err := g.C.Score(ctx, Request(c, wantMap))
	if err != nil {
		return nil, err
	}
	return ResultOf(p), nil
}

// Close closes the connection.
func (g *GRPC) Close() error { return g.conn.Close() }

// Prepare marshals the request once; Send passes those bytes to the transport as they are.
func (g *GRPC) Prepare(c *Cube, wantMap bool) (Prepared, error) {
	b, err := proto.Marshal(Request(c, wantMap))
	if err != nil {
		return nil, err
	}
	return &grpcPrepared{g: g, msg: &rawMessage{b: b}}, nil
}

type grpcPrepared struct {
	g   *GRPC
	msg *rawMessage
}

// Send makes the unary Score call with the pre-marshalled request.
func (p *grpcPrepared) Send(ctx context.Context) (*Result, error) {
	out := new(servepb.ScoreResponse)
	if err := p.g.conn.Invoke(ctx, servepb.Scorer_Score_FullMethodName, p.msg, out, grpc.ForceCodecV2(rawCodec{})); err != nil {
		return nil, err
	}
	return ResultOf(out), nil
}

// rawMessage is a request already in protobuf wire format.
type rawMessage struct{ b []byte }

// rawCodec is the proto codec, except that a *rawMessage is sent as its bytes.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*rawMessage); ok {
		return mem.BufferSlice{mem.SliceBuffer(r.b)}, nil
	}
	return encoding.GetCodecV2(protoCodecName).Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return encoding.GetCodecV2(protoCodecName).Unmarshal(data, v)
}

func (rawCodec) Name() string { return protoCodecName }

const protoCodecName = "proto"

// bearer sends a token as gRPC metadata "authorization: Bearer …". It does not demand TLS:
// a token over plaintext on loopback is the user's choice.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return false }
