package serve

import (
	"context"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spectraclip/spectraclip/serve/client"
)

// TestShmHardLinkRefused (#25 item 10): a hard link in the shm folder to a file outside it
// passed the name and O_NOFOLLOW checks and was read; a file with more than one link is now
// refused over both protocols, naming the link count, and the same file alone in the folder
// is still read.
func TestShmHardLinkRefused(t *testing.T) {
	dir := t.TempDir()
	s, base, gaddr := startServer(t, Options{ShmDir: dir})
	bands := s.Scorer().Bands
	f := randomFrame(rand.New(rand.NewSource(3)), 16, 16, bands)
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, cubeOf(f).Data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(outside, filepath.Join(dir, "linked")); err != nil {
		t.Skipf("no hard link across these folders: %v", err)
	}
	cube := &client.Cube{Shape: []int64{16, 16, int64(bands)}, DType: "float32", Shm: &client.ShmRef{Name: "linked"}}
	resp, msg := postJSON(t, base+"/v1/score", map[string]any{"shape": cube.Shape, "dtype": "float32", "shm": cube.Shm})
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(msg), "hard links") {
		t.Errorf("HTTP, a hard link to a file outside: %d %s", resp.StatusCode, msg)
	}
	g := dialGRPC(t, gaddr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := g.Score(ctx, cube, false); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "hard links") {
		t.Errorf("gRPC, a hard link to a file outside: %v", err)
	}
	// the outside name removed: the file has one link, in the folder, and is read
	if err := os.Remove(outside); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Score(ctx, cube, false); err != nil {
		t.Errorf("the same file with one link: %v", err)
	}
}
