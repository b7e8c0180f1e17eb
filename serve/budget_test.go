package serve

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spectraclip/spectraclip/serve/client"
)

// heldBody is a request body that sends head, then blocks until release is closed, then
// sends the rest; it counts the bytes taken from it.
type heldBody struct {
	head, rest []byte
	release    chan struct{}
	taken      atomic.Int64
	held       bool
}

func (b *heldBody) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		b.taken.Add(int64(n))
		return n, nil
	}
	if !b.held {
		<-b.release
		b.held = true
	}
	if len(b.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, b.rest)
	b.rest = b.rest[n:]
	b.taken.Add(int64(n))
	return n, nil
}

// npyOf is a float32 .npy body of shape (h, w, c) with random values.
func npyOf(t *testing.T, rng *rand.Rand, h, w, c int) []byte {
	return npyBytes(t, randomFrame(rng, h, w, c))
}

// TestInflightBudget (#25 item 7): requests are admitted against --max-inflight-mb
// before their bodies are read. With one request holding most of the budget (its body half
// sent), another is answered 503 naming --max-inflight-mb, over HTTP (a known length and a
// chunked body alike) and gRPC (RESOURCE_EXHAUSTED), without its body being read; a body
// whose Content-Length is over the largest cube's is answered 413 unread; once the first
// is answered, the others go through.
func TestInflightBudget(t *testing.T) {
	s, base, gaddr := startServer(t, Options{MaxBytes: 2 << 20, MaxInflight: 5 << 19})
	bands := s.Scorer().Bands
	rng := rand.New(rand.NewSource(1))
	// the first request: 32×256 frame, 2 MB of values, held after its first 64 KiB
	big := npyOf(t, rng, 32, 256, bands)
	hb := &heldBody{head: big[:64<<10], rest: big[64<<10:], release: make(chan struct{})}
	first := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", base+"/v1/score", hb)
		req.ContentLength = int64(len(big))
		req.Header.Set("Content-Type", "application/x-npy")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		first <- resp.StatusCode
	}()
	for i := 0; i < 200 && s.budget.peak.Load() == 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if s.budget.peak.Load() == 0 {
		t.Fatal("the first request reserved nothing")
	}
	small := npyOf(t, rng, 32, 128, bands) // 1 MB: does not fit beside the first (2 of 2.5 MB)
	send := func(body io.Reader, n int64) (int, string, http.Header) {
		req, _ := http.NewRequest("POST", base+"/v1/score", body)
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/x-npy")
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	// known length: refused before a byte is read (the body blocks after its head)
	hb2 := &heldBody{head: small[:16], rest: small[16:], release: make(chan struct{})}
	code, msg, hd := send(hb2, int64(len(small)))
	close(hb2.release)
	if code != http.StatusServiceUnavailable || !strings.Contains(msg, "--max-inflight-mb") || hd.Get("Retry-After") == "" {
		t.Errorf("a request that does not fit: %d %q (Retry-After %q), want 503 naming --max-inflight-mb", code, msg, hd.Get("Retry-After"))
	}
	// chunked (no length): stopped as its bytes pass the budget
	chunked := io.MultiReader(bytes.NewReader(small), bytes.NewReader(small), bytes.NewReader(small))
	code, msg, _ = send(chunked, -1)
	if code != http.StatusServiceUnavailable || !strings.Contains(msg, "--max-inflight-mb") {
		t.Errorf("a chunked request that does not fit: %d %q, want 503 naming --max-inflight-mb", code, msg)
	}
	// gRPC: RESOURCE_EXHAUSTED
	g := dialGRPC(t, gaddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := g.Score(ctx, cubeOf(randomFrame(rng, 32, 128, bands)), false)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--max-inflight-mb") {
		t.Errorf("gRPC request that does not fit: %v, want RESOURCE_EXHAUSTED naming --max-inflight-mb", err)
	}
	// over the largest cube, by its Content-Length: 413, unread
	huge := &heldBody{head: small[:16], rest: nil, release: make(chan struct{})}
	code, msg, _ = send(huge, 64<<20)
	close(huge.release)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "--max-cube-mb") {
		t.Errorf("Content-Length 64 MiB: %d %q, want 413 naming --max-cube-mb", code, msg)
	}
	close(hb.release)
	if c := <-first; c != 200 {
		t.Errorf("the first request: %d", c)
	}
	// the budget is free again: both protocols score
	if code, msg, _ := send(bytes.NewReader(small), int64(len(small))); code != 200 {
		t.Errorf("after the first was answered: %d %s", code, msg)
	}
	if _, err := g.Score(ctx, cubeOf(randomFrame(rng, 32, 128, bands)), false); err != nil {
		t.Errorf("gRPC after the first was answered: %v", err)
	}
	for i := 0; i < 100 && s.budget.used != 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	s.budget.mu.Lock()
	used := s.budget.used
	s.budget.mu.Unlock()
	if used != 0 {
		t.Errorf("%d bytes still reserved after every request was answered", used)
	}
}

// TestHugeDeclaredShapes (#25 item 8): shapes whose byte count overflows int64, or is far
// over --max-cube-mb at its largest (65536), are refused with 413 before anything is
// allocated, over .npy, JSON and gRPC.
func TestHugeDeclaredShapes(t *testing.T) {
	_, base, gaddr := startServer(t, Options{MaxBytes: MaxCubeMB << 20, MaxInflight: MaxCubeMB << 20})
	for _, shape := range [][]int64{{100000, 100000, 61}, {1 << 40, 1 << 40, 61}, {1 << 62, 4, 4}} {
		hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d), }", shape[0], shape[1], shape[2])
		b := append([]byte("\x93NUMPY\x01\x00"), binary.LittleEndian.AppendUint16(nil, uint16(len(hdr)))...)
		b = append(b, hdr...)
		resp, msg := post(t, base+"/v1/score", append(b, make([]byte, 64)...))
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), "--max-cube-mb") {
			t.Errorf(".npy shape %v: %d %s", shape, resp.StatusCode, msg)
		}
		resp, msg = postJSON(t, base+"/v1/score", map[string]any{"shape": shape, "dtype": "float32", "data": []byte{1, 2, 3, 4}})
		if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), "--max-cube-mb") {
			t.Errorf("JSON shape %v: %d %s", shape, resp.StatusCode, msg)
		}
		g := dialGRPC(t, gaddr)
		_, err := g.Score(context.Background(), &client.Cube{Shape: shape, DType: "float32", Data: []byte{1, 2, 3, 4}}, false)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "--max-cube-mb") {
			t.Errorf("gRPC shape %v: %v", shape, err)
		}
	}
}
