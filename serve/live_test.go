package serve

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"image/png"
	"io"
	"math"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/report"
	"github.com/spectraclip/spectraclip/serve/client"
)

// chromium finds Debian's chromium and checks that it can start here, or skips the test;
// under CI=true (where make deps installs it) a missing or broken chromium fails instead.
func chromium(t *testing.T) string {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	bin, err := exec.LookPath("chromium")
	if err != nil {
		skip("no chromium on PATH (apt-get install -y chromium; make deps installs it): the live page is not tested in a browser")
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, chromiumFlags(t, "--dump-dom", "about:blank")...).CombinedOutput()
	if err != nil {
		skip("chromium cannot start here (%v): %s", err, lastLines(string(out), 5))
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

// liveJSON is GET /v1/live's answer, decoded here on its own (not with the server's types).
type liveJSON struct {
	FPS    float64 `json:"fps"`
	Total  int64   `json:"total"`
	Frames []struct {
		ID       string  `json:"id"`
		Score    float64 `json:"score"`
		Decision bool    `json:"decision"`
		Pixels   int     `json:"anomaly_pixels"`
		H        int     `json:"height"`
		W        int     `json:"width"`
		Map      string  `json:"map_png"`
	} `json:"frames"`
}

// calibratedRun copies the test run and gives the copy a calibration.json whose pixel
// threshold is thr: the image decision is then "top 0.1 % mean ≥ thr" and a frame decided
// anomalous counts its pixels ≥ thr, so the count varies from frame to frame.
func calibratedRun(t *testing.T, thr float64) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.CopyFS(dir, os.DirFS(testRun)); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]float64{"pixel_threshold": thr})
	if err := os.WriteFile(filepath.Join(dir, "calibration.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// liveFrames are n random frames with a brighter band of rows of growing height, so that
// their scores spread out; the calibration threshold is put between the middle two.
func liveFrames(t *testing.T, n int) ([]*Frame, float64) {
	t.Helper()
	sc, err := OpenScorer(testRun, "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	frames := make([]*Frame, n)
	scores := make([]float64, n)
	for i := range frames {
		f := randomFrame(rng, 32, 32, sc.Bands)
		for k := range f.Data {
			if (k/sc.Bands)/32 < 3*i {
				f.Data[k] *= 3
			}
		}
		r, err := sc.Score([]*Frame{{H: f.H, W: f.W, C: f.C, Data: append([]float32(nil), f.Data...)}})
		if err != nil {
			t.Fatal(err)
		}
		frames[i], scores[i] = f, r[0].ImageScore
	}
	sort.Float64s(scores)
	if scores[n/2-1] == scores[n/2] {
		t.Fatalf("the middle frames score the same (%v): no threshold splits them", scores)
	}
	return frames, (scores[n/2-1] + scores[n/2]) / 2
}

// serveRun starts a server on o.Run (loopback ports), stopped when the test ends.
func serveRun(t *testing.T, o Options) (string, string) {
	t.Helper()
	_, url, grpcAddr := startServerOn(t, o, "127.0.0.1")
	return url, grpcAddr
}

// heatmapOf decodes a data:image/png;base64 URL and checks that it is, pixel for pixel,
// the inferno heatmap of scores (h×w): the map of that frame, not another's.
func heatmapOf(t *testing.T, what, src string, scores []float32, h, w int) {
	t.Helper()
	b64, ok := strings.CutPrefix(src, "data:image/png;base64,")
	if !ok {
		t.Errorf("%s: map is not a base64 PNG: %.60q", what, src)
		return
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Errorf("%s: map: %v", what, err)
		return
	}
	got, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Errorf("%s: map: %v", what, err)
		return
	}
	want, err := report.Heatmap(scores, h, w)
	if err != nil {
		t.Fatal(err)
	}
	if got.Bounds() != want.Bounds() {
		t.Errorf("%s: map is %v, want %v", what, got.Bounds(), want.Bounds())
		return
	}
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			r1, g1, b1, a1 := got.At(x, y).RGBA()
			r2, g2, b2, a2 := want.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 || a1 != a2 {
				t.Errorf("%s: map pixel (%d,%d) is %v, the heatmap of the frame's answered scores has %v", what, x, y, got.At(x, y), want.At(x, y))
				return
			}
		}
	}
}

// TestLivePageInBrowser: the live page, loaded in headless Chromium against a server fed
// six frames (over HTTP and gRPC alternately) whose scores straddle the run's calibrated
// threshold, shows for each frame, newest first, the id, the score (4 decimals), the
// decision and the anomaly pixel count that the frame's own score answer gave, and that
// map's heatmap; /v1/live's JSON carries the same values; the header shows the frame count
// and the throughput of the last 10 s (bounded by when the frames were answered); the
// screenshot is a real, non-blank image.
func TestLivePageInBrowser(t *testing.T) {
	bin := chromium(t)
	const n = 6
	frames, thr := liveFrames(t, n)
	url, grpcAddr := serveRun(t, Options{Run: calibratedRun(t, thr), MaxBatch: 2})
	hc, err := client.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := client.Dial("grpc://" + grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	type sent struct {
		id         string
		res        *client.Result
		start, end time.Time
	}
	var answers []sent
	decided := map[bool]int{}
	for i, f := range frames {
		c := client.Float32Cube(f.H, f.W, f.C, f.Data)
		c.FrameID = fmt.Sprintf("live-%d", i)
		cl, proto := hc, "http"
		if i%2 == 1 {
			cl, proto = gc, "grpc"
		}
		t0 := time.Now()
		r, err := cl.Score(context.Background(), c, true)
		if err != nil {
			t.Fatalf("scoring %s over %s: %v", c.FrameID, proto, err)
		}
		if r.FrameID != c.FrameID || r.ImageThreshold != thr || r.Decision != (r.ImageScore >= thr) {
			t.Fatalf("%s over %s: answer for %q, score %v threshold %v decision %v (calibrated threshold %v)", c.FrameID, proto, r.FrameID, r.ImageScore, r.ImageThreshold, r.Decision, thr)
		}
		answers = append(answers, sent{c.FrameID, r, t0, time.Now()})
		decided[r.Decision]++
	}
	if decided[true] == 0 || decided[false] == 0 {
		t.Fatalf("decisions %v: the frames should straddle the threshold %v", decided, thr)
	}
	newest := func(k int) sent { return answers[len(answers)-1-k] }

	// /v1/live, read by the test
	resp, err := http.Get(url + "/v1/live")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var live liveJSON
	if err := json.Unmarshal(body, &live); err != nil {
		t.Fatalf("/v1/live: %v: %.300s", err, body)
	}
	if live.Total != n || len(live.Frames) != n {
		t.Fatalf("/v1/live: total %d with %d frames, want %d", live.Total, len(live.Frames), n)
	}
	for k, f := range live.Frames {
		a := newest(k)
		if f.ID != a.id || f.Score != a.res.ImageScore || f.Decision != a.res.Decision || f.Pixels != a.res.AnomalyPixels || f.H != a.res.Height || f.W != a.res.Width {
			t.Errorf("/v1/live frame %d: id %s score %v decision %v %d px %d×%d; the score answer of %s: score %v decision %v %d px %d×%d",
				k, f.ID, f.Score, f.Decision, f.Pixels, f.H, f.W, a.id, a.res.ImageScore, a.res.Decision, a.res.AnomalyPixels, a.res.Height, a.res.Width)
		}
		heatmapOf(t, "/v1/live "+a.id, f.Map, a.res.Scores, a.res.Height, a.res.Width)
	}

	// the page, rendered by chromium
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	domStart := time.Now()
	out, err := exec.CommandContext(ctx, bin, chromiumFlags(t, "--virtual-time-budget=3000", "--dump-dom", url+"/")...).Output()
	domEnd := time.Now()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	dom := string(out)
	cards := regexp.MustCompile(`<div class="frame"><img class="map" alt="anomaly map of frame ([^"]*)" src="([^"]*)"><p class="(anomaly|normal) decision">([^<]*)</p></div>`).FindAllStringSubmatch(dom, -1)
	if len(cards) != n {
		t.Fatalf("the page shows %d frames, want %d; DOM:\n%.3000s", len(cards), n, dom)
	}
	line := regexp.MustCompile(`^(.*): score (-?[0-9]+\.[0-9]{4}) · (ANOMALY|normal) · ([0-9]+) px$`)
	for k, c := range cards {
		a := newest(k)
		text := html.UnescapeString(c[4])
		m := line.FindStringSubmatch(text)
		if m == nil {
			t.Errorf("frame %d on the page reads %q", k, text)
			continue
		}
		shown, _ := strconv.ParseFloat(m[2], 64)
		px, _ := strconv.Atoi(m[4])
		word, class := "normal", "normal"
		if a.res.Decision {
			word, class = "ANOMALY", "anomaly"
		}
		if html.UnescapeString(c[1]) != a.id || m[1] != a.id {
			t.Errorf("frame %d on the page is %q (map of %q), want %s (newest first)", k, m[1], c[1], a.id)
		}
		if math.Abs(shown-a.res.ImageScore) > 0.5e-4+1e-9 {
			t.Errorf("%s: the page shows score %s, the server answered %v", a.id, m[2], a.res.ImageScore)
		}
		if m[3] != word || c[3] != class {
			t.Errorf("%s: the page shows %s (class %s), the server decided %v", a.id, m[3], c[3], a.res.Decision)
		}
		if px != a.res.AnomalyPixels {
			t.Errorf("%s: the page shows %d px, the server counted %d", a.id, px, a.res.AnomalyPixels)
		}
		heatmapOf(t, "the page's "+a.id, html.UnescapeString(c[2]), a.res.Scores, a.res.Height, a.res.Width)
	}
	stats := regexp.MustCompile(`<p id="stats">throughput ([0-9]+\.[0-9]) frames/s \(last 10 s\) · ([0-9]+) frames scored</p>`).FindStringSubmatch(dom)
	if stats == nil {
		t.Fatalf("the page's header: %.500s", dom)
	}
	if stats[2] != strconv.Itoa(n) {
		t.Errorf("the page says %s frames scored, the test sent %d", stats[2], n)
	}
	// a frame is in the page's 10 s window for sure if it was sent less than 10 s before
	// the page was done, and out of it for sure if answered over 10 s before it started
	lo, hi := 0, n
	for _, a := range answers {
		if domEnd.Sub(a.start) < 10*time.Second {
			lo++
		}
		if domStart.Sub(a.end) > 10*time.Second {
			hi--
		}
	}
	if fps, _ := strconv.ParseFloat(stats[1], 64); fps < float64(lo)/10-0.05 || fps > float64(hi)/10+0.05 {
		t.Errorf("the page shows %s frames/s; %d to %d frames were answered in its 10 s window (%.1f to %.1f frames/s)", stats[1], lo, hi, float64(lo)/10, float64(hi)/10)
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
