package serve

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spectraclip/spectraclip/serve/client"
	"github.com/spectraclip/spectraclip/serve/servepb"
)

// TestShmEqualsInfer: a cube named in the shared-memory folder, over gRPC and HTTP, at an
// offset in a larger file, several at once (batched), gives infer's score map bit for bit.
func TestShmEqualsInfer(t *testing.T) {
	f, wantScores, _ := inferOutputs(t)
	dir := t.TempDir()
	_, url, gaddr := startServer(t, Options{MaxBatch: 4, MaxWait: 5 * time.Millisecond, Workers: 1, ShmDir: dir})
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	// the frame at a random 4-byte-aligned offset after random bytes, random bytes after it
	pre := 4 * rng.Intn(1000)
	buf := make([]byte, pre+4*len(f.Data)+rng.Intn(100))
	rng.Read(buf)
	copy(buf[pre:], cubeOf(f).Data)
	if err := os.WriteFile(filepath.Join(dir, "cam0"), buf, 0o600); err != nil {
		t.Fatal(err)
	}
	ref := &client.Cube{Shape: []int64{int64(f.H), int64(f.W), int64(f.C)}, DType: "float32", Shm: &client.ShmRef{Name: "cam0", Offset: uint64(pre)}}
	want := wantScores[len(wantScores)-4*f.H*f.W:]
	for _, addr := range []string{url, "grpc://" + gaddr} {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				r, err := c.Score(ctx, ref, true)
				if err == nil {
					for k, v := range r.Scores {
						if math.Float32bits(v) != binary.LittleEndian.Uint32(want[4*k:]) {
							err = errors.New("score map differs")
							t.Errorf("%s request %d: pixel %d is %v, infer wrote %v", addr, i, k, v, math.Float32frombits(binary.LittleEndian.Uint32(want[4*k:])))
							break
						}
					}
				}
				errs[i] = err
			}()
		}
		wg.Wait()
		c.Close()
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s request %d: %v", addr, i, err)
			}
		}
	}
	// WriteShm writes a file the server reads the same
	c, err := client.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w, err := client.WriteShm(dir, "cam1", cubeOf(f))
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Score(context.Background(), w, true)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4*len(r.Scores))
	for k, v := range r.Scores {
		binary.LittleEndian.PutUint32(got[4*k:], math.Float32bits(v))
	}
	if !bytes.Equal(got, want) {
		t.Error("WriteShm: the score map differs from infer's")
	}
}

// TestShmErrors: shared memory off, names outside the folder, a symbolic link, a file too
// short for the shape, data and shm together, another dtype and a NaN in the file are each
// refused with an error naming the problem, over both protocols; the server goes on.
func TestShmErrors(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	s, url, gaddr := startServer(t, Options{MaxBatch: 2, Workers: 1, ShmDir: dir})
	bands := s.Scorer().Bands
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	f := randomFrame(rng, 16, 16, bands)
	good := cubeOf(f).Data
	for name, b := range map[string][]byte{"good": good, "short": good[:len(good)-4]} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(outside, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	nan := bytes.Clone(good)
	at := rng.Intn(len(f.Data))
	binary.LittleEndian.PutUint32(nan[4*at:], math.Float32bits(float32(math.NaN())))
	if err := os.WriteFile(filepath.Join(dir, "nan"), nan, 0o600); err != nil {
		t.Fatal(err)
	}
	shape := []int64{16, 16, int64(bands)}
	px, band := at/bands, at%bands
	cases := []struct {
		cube *client.Cube
		want string
		code int // HTTP: 400 for a request that cannot be read, 422 for a cube the pipeline refuses
	}{
		{&client.Cube{Shape: shape, Shm: &client.ShmRef{Name: "../" + filepath.Base(filepath.Dir(outside)) + "/secret"}}, "want a plain file name", 400},
		{&client.Cube{Shape: shape, Shm: &client.ShmRef{Name: ".hidden"}}, "want a plain file name", 400},
		{&client.Cube{Shape: shape, Shm: &client.ShmRef{Name: "missing"}}, "no such file", 400},
		{&client.Cube{Shape: shape, Shm: &client.ShmRef{Name: "link"}}, "symbolic link", 400},
		{&client.Cube{Shape: shape, Shm: &client.ShmRef{Name: "short"}}, "needs " + strconv.Itoa(len(good)) + " bytes, the file has " + strconv.Itoa(len(good)-4), 400},
		{&client.Cube{Shape: shape, Shm: &client.ShmRef{Name: "good", Offset: 4}}, "at offset 4 needs", 400},
		{&client.Cube{Shape: shape, DType: "uint16", Shm: &client.ShmRef{Name: "good"}}, "float32 only", 400},
		{&client.Cube{Shape: []int64{8, 16, int64(bands) + 1}, Shm: &client.ShmRef{Name: "good"}}, "bands", 422},
		{&client.Cube{Shape: shape, Shm: &client.ShmRef{Name: "nan"}}, "row " + strconv.Itoa(px/16) + ", column " + strconv.Itoa(px%16) + ", band " + strconv.Itoa(band), 422},
	}
	for _, addr := range []string{url, "grpc://" + gaddr} {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range cases {
			_, err := c.Score(context.Background(), rawCube(tc.cube), false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %+v: %v, want an error saying %q", addr, tc.cube.Shm, err, tc.want)
			}
			if st, ok := status.FromError(err); strings.HasPrefix(addr, "grpc") && (!ok || st.Code() != codes.InvalidArgument) {
				t.Errorf("%s %+v: code %v, want InvalidArgument", addr, tc.cube.Shm, st.Code())
			}
			var se *client.StatusError
			if !strings.HasPrefix(addr, "grpc") && (!errors.As(err, &se) || se.Code != tc.code) {
				t.Errorf("%s %+v: %v, want HTTP %d", addr, tc.cube.Shm, err, tc.code)
			}
		}
		if _, err := c.Score(context.Background(), &client.Cube{Shape: shape, DType: "float32", Shm: &client.ShmRef{Name: "good"}}, false); err != nil {
			t.Errorf("%s: a good shm request after the bad ones: %v", addr, err)
		}
		c.Close()
	}
	// data and shm in one request (the client sends one or the other: built by hand)
	resp, body := postJSON(t, url+"/v1/score", map[string]any{"shape": shape, "dtype": "float32", "data": good, "shm": map[string]any{"name": "good"}})
	if resp.StatusCode != 400 || !strings.Contains(string(body), "both data and shm") {
		t.Errorf("HTTP data and shm: %d %s", resp.StatusCode, body)
	}
	g := dialGRPC(t, gaddr)
	req := client.Request(&client.Cube{Shape: shape, DType: "float32", Data: good}, false)
	req.Cube.Shm = &servepb.SharedMemory{Name: "good"}
	if _, err := g.C.Score(context.Background(), req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "both data and shm") {
		t.Errorf("gRPC data and shm: %v", err)
	}
	// a server without --shm-dir refuses shm requests
	_, url2, gaddr2 := startServer(t, Options{MaxBatch: 1, Workers: 1})
	for _, addr := range []string{url2, "grpc://" + gaddr2} {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Score(context.Background(), &client.Cube{Shape: shape, DType: "float32", Shm: &client.ShmRef{Name: "good"}}, false); err == nil || !strings.Contains(err.Error(), "shared memory is off") {
			t.Errorf("%s without --shm-dir: %v", addr, err)
		}
		c.Close()
	}
	if _, err := New(Options{Run: testRun, ShmDir: filepath.Join(dir, "good")}); err == nil || !strings.Contains(err.Error(), "--shm-dir") {
		t.Errorf("--shm-dir naming a file: %v", err)
	}
}

// TestShmFileShrinks: a file that shrinks between the request's check and the read is an
// error naming the file, not a crash (the values are read, not mapped).
func TestShmFileShrinks(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cam")
	if err := os.WriteFile(p, make([]byte, 4*8*8*3), 0o600); err != nil {
		t.Fatal(err)
	}
	src, err := openShm(dir, "cam", 0, 8, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	if err := os.Truncate(p, 100); err != nil {
		t.Fatal(err)
	}
	dst := make([]float32, 8*8*3)
	if _, err := src.read(dst); err == nil || !strings.Contains(err.Error(), "ended 100 bytes in") || !strings.Contains(err.Error(), p) {
		t.Fatalf("read of a shrunk file: %v", err)
	}
}

// rawCube fills in what the client leaves to the caller (the dtype default).
func rawCube(c *client.Cube) *client.Cube {
	if c.DType == "" {
		r := *c
		r.DType = "float32"
		return &r
	}
	return c
}

func postJSON(t *testing.T, url string, v any) (*http.Response, []byte) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return postAs(t, url, "application/json", b)
}

// TestShmOnlyFromThisMachine: a server listening on a network address refuses shared-memory
// requests that arrive from a non-loopback address (HTTP 403, gRPC PERMISSION_DENIED), and
// still scores cubes sent in the request from there; the same file is scored for a loopback
// client.
func TestShmOnlyFromThisMachine(t *testing.T) {
	var host string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			host = ipn.IP.String()
			break
		}
	}
	if host == "" {
		t.Skip("no non-loopback IPv4 address on this machine to send from")
	}
	dir := t.TempDir()
	s, url, gaddr := startServerOn(t, Options{MaxBatch: 1, Workers: 1, ShmDir: dir}, host)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	f := randomFrame(rng, 8, 8, s.Scorer().Bands)
	ref, err := client.WriteShm(dir, "cam", cubeOf(f))
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{url, "grpc://" + gaddr} {
		c, err := client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Score(context.Background(), ref, false)
		var se *client.StatusError
		if err == nil || !strings.Contains(err.Error(), "only clients on the server's machine") || !strings.Contains(err.Error(), host) {
			t.Errorf("%s: shm from %s: %v", addr, host, err)
		} else if strings.HasPrefix(addr, "grpc") && status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: code %v, want PermissionDenied", addr, status.Code(err))
		} else if !strings.HasPrefix(addr, "grpc") && (!errors.As(err, &se) || se.Code != 403) {
			t.Errorf("%s: %v, want HTTP 403", addr, err)
		}
		if _, err := c.Score(context.Background(), cubeOf(f), false); err != nil {
			t.Errorf("%s: the same cube in the request: %v", addr, err)
		}
		c.Close()
	}
	if got := testutil.ToFloat64(s.Metrics().errors.WithLabelValues("forbidden")); got != 2 {
		t.Errorf("errors{cause=forbidden} = %v, want 2", got)
	}
	// the loopback address of the same server is not a network peer
	if localPeer(host+":1") || !localPeer("127.0.0.1:5") || !localPeer("[::1]:5") || localPeer("example.org:80") {
		t.Error("localPeer misjudges an address")
	}
}
