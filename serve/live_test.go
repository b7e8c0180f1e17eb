package serve

import (
	"bytes"
	"context"
	"image/png"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// chromium finds Debian's chromium and checks that it can start here, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium on PATH (apt-get install -y chromium): the live page is not tested in a browser")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, chromiumFlags(t, "--dump-dom", "about:blank")...).CombinedOutput()
	if err != nil {
		t.Skipf("chromium cannot start here (%v): %s", err, lastLines(string(out), 5))
	}
	return bin
}

func chromiumFlags(t *testing.T, extra ...string) []string {
	return append([]string{"--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir()}, extra...)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestLivePageInBrowser: the live page, loaded in headless Chromium against a server fed
// with synthetic frames, shows each frame's anomaly map (a PNG image with the frame's id)
// and the throughput; its screenshot is a real, non-blank image.
func TestLivePageInBrowser(t *testing.T) {
	bin := chromium(t)
	s, url, _ := startServer(t, Options{})
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for i := 0; i < 3; i++ {
		resp, b := post(t, url+"/v1/score?frame_id=synthetic-"+string(rune('0'+i)), npyBytes(t, randomFrame(rng, 32, 32, s.Scorer().Bands)))
		if resp.StatusCode != 200 {
			t.Fatalf("scoring a synthetic frame: %d %s", resp.StatusCode, b)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dom, err := exec.CommandContext(ctx, bin, chromiumFlags(t, "--virtual-time-budget=3000", "--dump-dom", url+"/")...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	imgs := regexp.MustCompile(`<img class="map" alt="anomaly map of frame (synthetic-\d)" src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"`).FindAllStringSubmatch(string(dom), -1)
	if len(imgs) != 3 {
		t.Fatalf("the page shows %d anomaly maps, want 3; DOM:\n%.2000s", len(imgs), dom)
	}
	if imgs[0][1] != "synthetic-2" {
		t.Errorf("newest map first: got %s", imgs[0][1])
	}
	for _, w := range []string{"frames/s", "3 frames scored", "synthetic-0: score "} {
		if !strings.Contains(string(dom), w) {
			t.Errorf("the page lacks %q", w)
		}
	}
	shot := filepath.Join(t.TempDir(), "live.png")
	cmd := exec.CommandContext(ctx, bin, chromiumFlags(t, "--virtual-time-budget=3000", "--window-size=900,600", "--screenshot="+shot, url+"/")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v %s", err, lastLines(string(out), 5))
	}
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("SPECTRACLIP_LIVE_SCREENSHOT"); keep != "" {
		os.WriteFile(keep, b, 0o644) // to look at it
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if r := img.Bounds(); r.Dx() != 900 || r.Dy() != 600 {
		t.Errorf("screenshot is %v", r)
	}
	// the maps are drawn with the inferno colormap: count distinct colours in the maps' area
	colours := map[[3]uint32]bool{}
	for y := 100; y < 600; y += 2 {
		for x := 0; x < 900; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	if len(colours) < 50 {
		t.Errorf("the screenshot has %d colours: the maps are not drawn", len(colours))
	}
}
