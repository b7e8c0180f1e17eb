package chaos

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/dataset"
)

// Case is one bad input with its expected outcome.
type Case struct {
	// Name is "group/what"; the group names the reader, config layer or command.
	Name string
	// Build writes the case's inputs under e.Dir and returns the invocation.
	Build func(t *testing.T, e *Env) Invocation
	// Mentions must all appear in the error line: the file, key or flag at fault. A string
	// starting with "$" is taken relative to the case directory's path.
	Mentions []string
	// Succeed marks a control case that must exit 0 (it proves the fixtures are sound).
	Succeed bool
	// KnownFailing names a defect outside this harness that makes the case fail today.
	KnownFailing string
	// Timeout bounds the run (default 90 s).
	Timeout time.Duration
	// MaxRSS, when positive, bounds the run's own peak resident memory (peakrss) above the
	// binary's start-up peak (that of `spectraclip version`: 184 MiB on Debian's 1.13, 378 MiB
	// on PyPI's CUDA 2.11, which pages in CUDA libraries it never uses on a CPU), in bytes, for
	// control cases too; 0: only the corpus-wide 3 GiB bound of failing cases.
	MaxRSS int64
}

// Invocation is how a case runs: a CLI command line, or (for readers no command reaches)
// a library call made in this process.
type Invocation struct {
	Args []string
	Env  []string
	Lib  func() error
}

// Env is the case's working directory plus shared fixtures.
type Env struct {
	Dir string
	fx  *fixtures
}

// fixtures are built once per test process and only read by cases (cases that need to
// change one copy it into their own directory first).
type fixtures struct {
	once    sync.Once
	err     error
	dir     string
	data    string // a tiny synthetic dataset
	run     string // a finished PCA run on it
	cubeHdr string // one ENVI frame of data
}

var shared fixtures

// Fixtures builds (once) the shared dataset and run.
func (e *Env) Fixtures(t *testing.T) *fixtures {
	t.Helper()
	fx := e.fx
	fx.once.Do(func() {
		fx.dir, fx.err = os.MkdirTemp("", "chaos-fixtures-")
		if fx.err != nil {
			return
		}
		fx.data = filepath.Join(fx.dir, "data")
		cfg := dataset.DefaultSynthConfig()
		cfg.Frames, cfg.Height, cfg.Width, cfg.ValFrames, cfg.TestFrames, cfg.StoneFreeFrames = 6, 32, 32, 2, 2, 0
		if fx.err = dataset.GenerateSynthetic(fx.data, cfg); fx.err != nil {
			return
		}
		fx.cubeHdr = filepath.Join(fx.data, "frames", "frame_000.hdr")
		fx.run = filepath.Join(fx.dir, "run")
		r := RunCLI(t, RunOptions{Dir: fx.dir, Timeout: 5 * time.Minute},
			append([]string{"--log-level", "error", "train", "--variant", "pca", "--out", fx.run}, tinyOverrides(fx.data)...)...)
		if r.Exit != 0 {
			fx.err = fmt.Errorf("training the fixture run: exit %d\n%s", r.Exit, r.Stderr)
		}
	})
	if fx.err != nil {
		t.Fatal(fx.err)
	}
	return fx
}

// tinyOverrides make a run take seconds on the fixture data.
func tinyOverrides(root string) []string {
	return []string{"data.root=" + root, "+pipeline.detector.image_size=32", "training.threads=1", "training.trainer.max_epochs=1"}
}

// CopyData copies the fixture dataset into the case directory and returns its path.
func (e *Env) CopyData(t *testing.T) string {
	fx := e.Fixtures(t)
	dst := filepath.Join(e.Dir, "data")
	copyTree(t, fx.data, dst)
	return dst
}

// CopyRun copies the fixture run into the case directory and returns its path.
func (e *Env) CopyRun(t *testing.T) string {
	fx := e.Fixtures(t)
	dst := filepath.Join(e.Dir, "run")
	copyTree(t, fx.run, dst)
	return dst
}

func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// write creates dir/name (and its parents) with content.
func write(t *testing.T, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// allCases is the corpus, in a stable order.
func allCases() []Case {
	var cs []Case
	for _, g := range [][]Case{enviCases(), npyCases(), npzCases(), matCases(), cocoCases(), manifestCases(),
		pngCases(), cu3sCases(), trainrunCases(), overrideCases(), envCases(), cliCases(),
		diskCases(), boundsCases(), serveCases()} {
		cs = append(cs, g...)
	}
	for i := range cs {
		if why, ok := knownFailing[cs[i].Name]; ok {
			cs[i].KnownFailing = why
		}
	}
	return cs
}

// shortSample picks about 20 cases spread over the groups for `go test ./chaos/`.
func shortSample(cs []Case) []Case {
	byGroup := map[string][]Case{}
	var groups []string
	for _, c := range cs {
		g := strings.SplitN(c.Name, "/", 2)[0]
		if byGroup[g] == nil {
			groups = append(groups, g)
		}
		byGroup[g] = append(byGroup[g], c)
	}
	var out []Case
	for _, g := range groups {
		list := byGroup[g]
		// The first case of each group and one from its middle: fixed, so the short run is
		// the same every time.
		out = append(out, list[0])
		if len(list) > 2 {
			out = append(out, list[len(list)/2])
		}
	}
	return out
}

// outcome classifies one case.
type outcome int

const (
	passed outcome = iota
	failed
	crashed
)

// snapshot records every path under dir with its size and modification time.
func snapshot(dir string) map[string]string {
	m := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(rel, ".plugin-cache") {
			return nil
		}
		info, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		m[rel] = fmt.Sprintf("%v %d %d", info.Mode(), info.Size(), info.ModTime().UnixNano())
		return nil
	})
	return m
}

var crashRE = regexp.MustCompile(`(?m)^(panic: |fatal error: |goroutine \d+ \[|SIGSEGV|runtime: out of memory|terminate called)`)

// check runs one case and says what went wrong ("" when it passed).
func check(t *testing.T, c Case) (outcome, string, Result) {
	e := &Env{Dir: t.TempDir(), fx: &shared}
	inv := c.Build(t, e)
	before := snapshot(e.Dir)
	var r Result
	timeout := c.Timeout
	if timeout == 0 {
		timeout = 90 * time.Second
	}
	if inv.Lib != nil {
		r = runLib(inv.Lib)
	} else {
		r = RunCLI(t, RunOptions{Dir: e.Dir, Env: inv.Env, Timeout: timeout, PeakRSS: c.MaxRSS > 0}, inv.Args...)
	}
	after := snapshot(e.Dir)
	var problems []string
	if r.Signal != "" || r.TimedOut || crashRE.MatchString(r.Stderr) {
		what := "crashed"
		if r.TimedOut {
			what = fmt.Sprintf("ran past %v", timeout)
		} else if r.Signal != "" {
			what = "killed by " + r.Signal
		}
		return crashed, what + ": " + lastLines(r.Stderr, 6), r
	}
	if base := startupRSSKiB(t); c.MaxRSS > 0 && (r.MaxRSSKiB-base)<<10 > c.MaxRSS {
		return failed, fmt.Sprintf("peak RSS %d MiB, %d MiB above the start-up's %d MiB, over the case's bound of %d MiB above it (exit %d): %s",
			r.MaxRSSKiB>>10, (r.MaxRSSKiB-base)>>10, base>>10, c.MaxRSS>>20, r.Exit, lastLines(r.Stderr, 2)), r
	}
	if c.Succeed {
		if r.Exit != 0 {
			return failed, fmt.Sprintf("control case exited %d: %s", r.Exit, lastLines(r.Stderr, 3)), r
		}
		return passed, "", r
	}
	if r.Exit != 1 {
		problems = append(problems, fmt.Sprintf("exit status %d, want 1", r.Exit))
	}
	var errLines []string
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "error:") {
			errLines = append(errLines, l)
		}
	}
	switch {
	case len(errLines) != 1:
		problems = append(problems, fmt.Sprintf("%d lines start with \"error:\", want 1", len(errLines)))
	case lines[len(lines)-1] != errLines[0]:
		problems = append(problems, "the error is not the last line of stderr")
	default:
		for _, m := range c.Mentions {
			m = strings.ReplaceAll(m, "$", e.Dir+string(filepath.Separator))
			if !strings.Contains(errLines[0], m) {
				problems = append(problems, fmt.Sprintf("the error does not mention %q", m))
			}
		}
		if len(errLines[0]) > 1500 {
			problems = append(problems, fmt.Sprintf("the error line is %d characters long", len(errLines[0])))
		}
	}
	if strings.TrimSpace(r.Stdout) != "" {
		problems = append(problems, "stdout is not empty: "+firstLine(r.Stdout))
	}
	var added, changed []string
	for p, v := range after {
		if w, ok := before[p]; !ok {
			added = append(added, p)
		} else if w != v {
			changed = append(changed, p)
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			changed = append(changed, p+" (removed)")
		}
	}
	sort.Strings(added)
	sort.Strings(changed)
	if len(added) > 0 {
		problems = append(problems, fmt.Sprintf("left behind: %s", clip(strings.Join(added, ", "), 300)))
	}
	if len(changed) > 0 {
		problems = append(problems, fmt.Sprintf("changed inputs: %s", clip(strings.Join(changed, ", "), 300)))
	}
	if r.MaxRSSKiB > 3<<20 {
		problems = append(problems, fmt.Sprintf("peak RSS %d MiB", r.MaxRSSKiB>>10))
	}
	if len(problems) > 0 {
		return failed, strings.Join(problems, "; ") + "\n    stderr: " + lastLines(r.Stderr, 3), r
	}
	return passed, "", r
}

// runLib runs a library call as a case: its error is printed the way main does.
func runLib(fn func() error) (r Result) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			r = Result{Stderr: fmt.Sprintf("panic: %v\n", p), Exit: 2, Elapsed: time.Since(start)}
		}
	}()
	if err := fn(); err != nil {
		return Result{Stderr: "error: " + err.Error() + "\n", Exit: 1, Elapsed: time.Since(start)}
	}
	return Result{Exit: 0, Elapsed: time.Since(start)}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return clip(strings.Join(lines, " | "), 600)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return clip(l, 200)
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// TestCorpus runs the bad-input corpus: a short sample by default, everything with
// CHAOS_FULL=1; CHAOS_CASE=regexp selects cases by name.
func TestCorpus(t *testing.T) {
	cs := allCases()
	names := map[string]bool{}
	for _, c := range cs {
		if names[c.Name] {
			t.Fatalf("case name %q is used twice", c.Name)
		}
		names[c.Name] = true
	}
	full := os.Getenv("CHAOS_FULL") != ""
	if sel := os.Getenv("CHAOS_CASE"); sel != "" {
		re := regexp.MustCompile(sel)
		var keep []Case
		for _, c := range cs {
			if re.MatchString(c.Name) {
				keep = append(keep, c)
			}
		}
		cs = keep
	} else if !full {
		cs = shortSample(cs)
	}
	verbose := os.Getenv("CHAOS_VERBOSE") != ""
	var nPass, nFail, nCrash, nKnown, nFixed, knownCrashes int
	var knownList []string
	for _, c := range cs {
		c := c
		t.Run(c.Name, func(t *testing.T) {
			o, why, r := check(t, c)
			if verbose {
				t.Logf("%s %q exit %d in %v, %d MiB\n%s", c.Name, r.Args, r.Exit, r.Elapsed.Round(time.Millisecond), r.MaxRSSKiB>>10, r.Stderr)
			}
			switch {
			case o == passed && c.KnownFailing != "":
				nPass++
				nFixed++
				t.Errorf("passes now although marked known-failing (%s): remove the mark", c.KnownFailing)
			case o == passed:
				nPass++
			case c.KnownFailing != "":
				nKnown++
				if o == crashed {
					nCrash++
					knownCrashes++
				}
				knownList = append(knownList, c.Name)
				t.Logf("known failing (%s): %s", c.KnownFailing, why)
			case o == crashed:
				nCrash++
				t.Errorf("CRASH: %q: %s", r.Args, why)
			default:
				nFail++
				t.Errorf("%q: %s", r.Args, why)
			}
		})
	}
	// Known-failing cases count in the crash or failure column like any other; the list names
	// them so the summary says which are expected.
	summary := fmt.Sprintf("chaos corpus: %d cases, %d passed, %d crashes, %d failed", len(cs), nPass, nCrash, nFail+nKnown-knownCrashes)
	if nKnown > 0 {
		summary += fmt.Sprintf(" (%d known-failing: %s)", nKnown, strings.Join(knownList, " "))
	}
	fmt.Println(summary)
	_ = nFixed
}

// TestCorpusCoverage checks the corpus itself: at least 150 cases, names unique, every
// reader, config layer and command group present, and control cases in each reader group.
func TestCorpusCoverage(t *testing.T) {
	cs := allCases()
	if len(cs) < 150 {
		t.Errorf("the corpus has %d cases; want at least 150", len(cs))
	}
	groups := map[string]int{}
	controls := map[string]bool{}
	for _, c := range cs {
		g := strings.SplitN(c.Name, "/", 2)[0]
		groups[g]++
		if c.Succeed {
			controls[g] = true
		}
	}
	for _, g := range []string{"envi", "npy", "npz", "mat", "coco", "manifest", "png", "cu3s", "trainrun", "override", "env", "cli", "disk", "bounds", "serve"} {
		if groups[g] == 0 {
			t.Errorf("no cases for %s", g)
		}
	}
	for _, g := range []string{"envi", "npy", "npz", "mat", "png", "trainrun"} {
		if !controls[g] {
			t.Errorf("group %s has no control case that must succeed", g)
		}
	}
	for name := range knownFailing {
		if !names(cs)[name] {
			t.Errorf("known-failing case %q is not in the corpus", name)
		}
	}
	if n := len(shortSample(cs)); n < 15 || n > 30 {
		t.Errorf("the short sample has %d cases; want about 20", n)
	}
	t.Logf("%d cases: %v", len(cs), groups)
}

func names(cs []Case) map[string]bool {
	m := map[string]bool{}
	for _, c := range cs {
		m[c.Name] = true
	}
	return m
}

var startupRSS struct {
	once sync.Once
	kib  int64
}

// startupRSSKiB is the binary's own peak RSS for `version` (LibTorch loaded, nothing done),
// measured once: the base that Case.MaxRSS is counted from.
func startupRSSKiB(t *testing.T) int64 {
	startupRSS.once.Do(func() {
		r := RunCLI(t, RunOptions{PeakRSS: true}, "version")
		if r.Exit != 0 {
			t.Fatalf("spectraclip version: exit %d\n%s", r.Exit, r.Stderr)
		}
		startupRSS.kib = r.MaxRSSKiB
	})
	return startupRSS.kib
}
