package nodes

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/torch"
)

// TestWeightsBoundChild is the child process of TestLoadRefusesOversizedWeights: it loads the
// pipeline $SC_WEIGHTS_CHILD under an address-space limit of its start-up size plus 3 GiB
// (so that a reader that reads the whole file fails instead of the machine) and prints the
// error.
func TestWeightsBoundChild(t *testing.T) {
	path := os.Getenv("SC_WEIGHTS_CHILD")
	if path == "" {
		t.Skip("run by TestLoadRefusesOversizedWeights")
	}
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmSize:" {
			kib, _ := strconv.ParseUint(f[1], 10, 64)
			lim := (kib << 10) + 3<<30
			_ = syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: lim, Max: lim})
		}
	}
	p, err := Load(path, testRegistry(), torch.CPU)
	// the peak RSS of this process since its exec (rusage's maxrss also counts what the
	// parent had mapped when it forked)
	b, _ = os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			fmt.Fprintln(os.Stderr, "HWM-KIB:", f[1])
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "LOAD-ERROR:", err)
		os.Exit(3)
	}
	p.Close()
}

// TestLoadRefusesOversizedWeights: a pipeline's weights file that is far larger than the
// pipeline's state or than its zip central directory accounts for (a sparse 8 GiB file of
// zeros, a good archive with 8 GiB of holes after or before it, a good archive of tensors
// hundreds of times larger than the nodes hold) is refused with an error naming it before
// it is read: the loading process stays within a few MiB of the peak RSS and the time of
// loading the good file (#25 item 6: infer read all 8 GiB, 16.6 GB RSS, 79 s).
func TestLoadRefusesOversizedWeights(t *testing.T) {
	if os.Getenv("SC_WEIGHTS_CHILD") != "" {
		t.Skip("child")
	}
	r := testRegistry()
	rng := rand.New(rand.NewPCG(rand.Uint64(), 9))
	p, _, _ := buildMixScale(t, r, rng)
	defer p.Close()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := p.Save(good); err != nil {
		t.Fatal(err)
	}
	goodW, err := os.ReadFile(WeightsPath(good))
	if err != nil {
		t.Fatal(err)
	}
	yamlB, _ := os.ReadFile(good)
	const sparse = 8 << 30
	cases := []struct {
		name string
		mk   func(w string) error
	}{
		{"sparse-zeros", func(w string) error {
			if err := os.WriteFile(w, nil, 0o644); err != nil {
				return err
			}
			return os.Truncate(w, sparse)
		}},
		{"holes-after", func(w string) error {
			if err := os.WriteFile(w, goodW, 0o644); err != nil {
				return err
			}
			return os.Truncate(w, sparse)
		}},
		{"holes-before", func(w string) error {
			f, err := os.Create(w)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt(goodW, sparse)
			return err
		}},
		{"tensors-too-large", func(w string) error {
			s := torch.NewScope()
			defer s.Close()
			big := make([]float32, 16<<20) // 64 MiB where the mixer holds 12 + 4 floats
			for i := range big {
				big[i] = rng.Float32()
			}
			st, err := p.State()
			if err != nil {
				return err
			}
			st["mixer/weight"] = s.FromFloat32(big, int64(len(big)))
			for i := 0; i < 10; i++ {
				st["mixer/extra"+strconv.Itoa(i)] = s.FromFloat32(big, int64(len(big)))
			}
			return torch.SaveTensors(w, st)
		}},
	}
	child := func(yaml string) (string, int, time.Duration, int64) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWeightsBoundChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "SC_WEIGHTS_CHILD="+yaml)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		cmd.Stdout = io.Discard
		t0 := time.Now()
		_ = cmd.Run()
		el := time.Since(t0)
		var rss int64 // KiB
		for _, l := range strings.Split(stderr.String(), "\n") {
			if v, ok := strings.CutPrefix(l, "HWM-KIB: "); ok {
				rss, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
		if rss == 0 {
			t.Fatalf("the child did not report its peak RSS:\n%s", lastLines(stderr.String(), 4))
		}
		return stderr.String(), cmd.ProcessState.ExitCode(), el, rss
	}
	out, code, goodTime, goodRSS := child(good)
	if code != 0 {
		t.Fatalf("the good pipeline does not load: exit %d\n%s", code, out)
	}
	t.Logf("good weights (%d bytes): %v, peak RSS %d MiB", len(goodW), goodTime.Round(time.Millisecond), goodRSS>>10)
	for _, c := range cases {
		name, mk := c.name, c.mk
		y := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(y, yamlB, 0o644); err != nil {
			t.Fatal(err)
		}
		w := WeightsPath(y)
		if err := mk(w); err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(w)
		out, code, el, rss := child(y)
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "LOAD-ERROR: ") {
				line = l
			}
		}
		t.Logf("%s (%d bytes): exit %d in %v, peak RSS %d MiB: %s", name, fi.Size(), code, el.Round(time.Millisecond), rss>>10, line)
		if code != 3 || line == "" || !strings.Contains(line, w) || !strings.Contains(line, "refusing to read") && !strings.Contains(line, "not a PyTorch tensor archive") {
			t.Errorf("%s: exit %d, want a clean error naming %s that refuses to read it:\n%s", name, code, w, lastLines(out, 4))
		}
		if rss > goodRSS+32<<10 {
			t.Errorf("%s: peak RSS %d MiB, loading the good file %d MiB: the file was read", name, rss>>10, goodRSS>>10)
		}
		if el > goodTime+3*time.Second {
			t.Errorf("%s: took %v, loading the good file %v", name, el, goodTime)
		}
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
