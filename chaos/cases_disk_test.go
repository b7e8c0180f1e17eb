package chaos

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/internal/testfs"
)

// diskCases are the corpus cases for a full disk, symlinked locks, stale infer partials and oversized or sparse tensor files (#25 items 1, 2, 4, 6).
func diskCases() []Case {
	cs := []Case{
		// #25 item 2: a .lock that is a link is refused and its target keeps every byte (the
		// target lies in the case directory, so the harness sees any change to it).
		lockCase("lock-symlink-calibrate", "symlink", false, func(run string) []string { return []string{"calibrate", "--run", run} }),
		lockCase("lock-symlink-resume", "symlink", true, func(run string) []string {
			return []string{"train", "--out", run, "--resume", filepath.Join(run, "checkpoints", "last")}
		}),
		lockCase("lock-hardlink-calibrate", "hardlink", false, func(run string) []string { return []string{"calibrate", "--run", run} }),
		lockCase("lock-fifo-resume", "fifo", true, func(run string) []string {
			return []string{"train", "--out", run, "--resume", filepath.Join(run, "checkpoints", "last")}
		}),
		// #25 item 6: weights far larger than the pipeline or the archive's directory says are
		// refused before they are read (the harness bounds the time, the address space and the
		// peak RSS)
		weightsCase("weights-sparse-8g", func(t *testing.T, w string) {
			if err := os.Truncate(w, 8<<30); err != nil {
				t.Fatal(err)
			}
		}),
		weightsCase("weights-holes-before-archive", func(t *testing.T, w string) {
			b, err := os.ReadFile(w)
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Create(w)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(b, 8<<30); err != nil {
				t.Fatal(err)
			}
		}),
		// #25 item 4: the partial folders of killed infers are removed by the next infer
		{Name: "disk/infer-stale-partials-removed", Succeed: true, Timeout: 3 * time.Minute, Build: func(t *testing.T, e *Env) Invocation {
			fx := e.Fixtures(t)
			return Invocation{Lib: func() error { return inferPartialsTrial(t, fx) }}
		}},
	}
	// #25 item 1: a full disk at every point of a training's writes is one error line naming
	// the file, never an abort; then, with the space freed, the run resumes bit-identical
	for _, kib := range []int64{0, 4, 8, 16, 32, 64, 96, 128, 192} {
		cs = append(cs, Case{
			Name:     fmt.Sprintf("disk/train-full-%dk-free", kib),
			Mentions: []string{"space left on device"},
			Timeout:  2 * time.Minute,
			Build: func(t *testing.T, e *Env) Invocation {
				mnt := testfs.MountTmpfs(t, 4096)
				testfs.FillTo(t, mnt, kib<<10)
				// the run is on the tmpfs, outside the case directory: the error names it
				return Invocation{Args: killArgs("drcnn", e.Fixtures(t).data, filepath.Join(mnt, "run"))}
			},
		})
	}
	cs = append(cs, Case{Name: "disk/train-full-then-resume-identical", Succeed: true, Timeout: 8 * time.Minute, Build: func(t *testing.T, e *Env) Invocation {
		fx := e.Fixtures(t)
		return Invocation{Lib: func() error { return fullThenResumeTrial(t, fx.data) }}
	}})
	return cs
}

// lockCase copies the fixture run (or trains one with checkpoints to resume), makes its
// .lock a link (or FIFO) to a file of random bytes in the case directory, and runs the
// command.
func lockCase(name, kind string, checkpointed bool, args func(run string) []string) Case {
	return Case{Name: "disk/" + name, Mentions: []string{"$run/.lock"}, Timeout: 2 * time.Minute, Build: func(t *testing.T, e *Env) Invocation {
		var run string
		if checkpointed {
			run = filepath.Join(e.Dir, "run")
			if r := RunCLI(t, RunOptions{Dir: e.Dir}, killArgs("drcnn", e.Fixtures(t).data, run)...); r.Exit != 0 {
				t.Fatalf("training the run to resume: exit %d: %s", r.Exit, lastLines(r.Stderr, 3))
			}
		} else {
			run = e.CopyRun(t)
		}
		target := filepath.Join(e.Dir, "precious.bin")
		b := make([]byte, 4096)
		_, _ = rand.Read(b)
		if err := os.WriteFile(target, b, 0o644); err != nil {
			t.Fatal(err)
		}
		lock := filepath.Join(run, ".lock")
		os.Remove(lock)
		var err error
		switch kind {
		case "symlink":
			err = os.Symlink(target, lock)
		case "hardlink":
			err = os.Link(target, lock)
		case "fifo":
			err = syscall.Mkfifo(lock, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
		return Invocation{Args: args(run)}
	}}
}

// weightsCase copies the fixture run, spoils its pipeline.weights.pt with mk and runs infer.
func weightsCase(name string, mk func(t *testing.T, w string)) Case {
	return Case{Name: "disk/" + name, Mentions: []string{"$run/pipeline.weights.pt", "refusing to read"}, Timeout: 30 * time.Second, Build: func(t *testing.T, e *Env) Invocation {
		run := e.CopyRun(t)
		mk(t, filepath.Join(run, "pipeline.weights.pt"))
		return Invocation{Args: []string{"infer", "--run", run, "--input", e.Fixtures(t).cubeHdr, "--out", filepath.Join(e.Dir, "out")}}
	}}
}

// fullThenResumeTrial trains on a tmpfs filled to several levels: each run must fail with
// one error line about the space, with no abort; once the filler is removed the run resumes
// from its last checkpoint (or starts again when it has none) and ends bit-identical to an
// uninterrupted run, with no temporary file left.
func fullThenResumeTrial(t *testing.T, data string) error {
	root := t.TempDir()
	ref := filepath.Join(root, "ref")
	if r := RunCLI(t, RunOptions{Dir: root}, killArgs("drcnn", data, ref)...); r.Exit != 0 {
		return fmt.Errorf("the uninterrupted run: exit %d: %s", r.Exit, lastLines(r.Stderr, 3))
	}
	mnt := testfs.MountTmpfs(t, 4096)
	var problems []string
	for _, kib := range []int64{0, 12, 40, 72, 104, 136, 168, 200} {
		out := filepath.Join(mnt, fmt.Sprintf("run%d", kib))
		testfs.FillTo(t, mnt, kib<<10)
		r := RunCLI(t, RunOptions{Dir: root}, killArgs("drcnn", data, out)...)
		if r.Signal != "" || crashRE.MatchString(r.Stderr) {
			problems = append(problems, fmt.Sprintf("%d KiB free: crashed (%s): %s", kib, r.Signal, lastLines(r.Stderr, 3)))
		} else if r.Exit == 0 {
			// everything fitted: nothing to resume
		} else if n := strings.Count(r.Stderr, "error:"); r.Exit != 1 || n != 1 || !strings.Contains(r.Stderr, "space left on device") {
			problems = append(problems, fmt.Sprintf("%d KiB free: exit %d with %d error lines: %s", kib, r.Exit, n, lastLines(r.Stderr, 3)))
		}
		if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
			return err
		}
		if r.Exit != 0 {
			rr := RunCLI(t, RunOptions{Dir: root}, "--log-level", "warn", "train", "--out", out, "--resume", filepath.Join(out, "checkpoints", "last"))
			if rr.Exit != 0 {
				// no complete checkpoint yet: start again, as a user would
				os.RemoveAll(out)
				rr = RunCLI(t, RunOptions{Dir: root}, killArgs("drcnn", data, out)...)
			}
			if rr.Exit != 0 {
				problems = append(problems, fmt.Sprintf("%d KiB free, then freed: exit %d: %s", kib, rr.Exit, lastLines(rr.Stderr, 3)))
				continue
			}
		}
		if left := leftovers(out); len(left) > 0 {
			problems = append(problems, fmt.Sprintf("%d KiB free: left %v", kib, left))
		}
		if why := sameRun(ref, out); why != "" {
			problems = append(problems, fmt.Sprintf("%d KiB free: differs from the uninterrupted run: %s", kib, why))
		}
		os.RemoveAll(out)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// inferPartialsTrial SIGKILLs infer while its staging folder exists (up to 7 tries, until
// one kill left a folder), then runs infer again into the same output: every staging folder
// of that output must be gone, another output's must stay.
func inferPartialsTrial(t *testing.T, fx *fixtures) error {
	root := t.TempDir()
	in := filepath.Join(root, "in")
	if err := os.MkdirAll(in, 0o755); err != nil {
		return err
	}
	for i := 0; i < 12; i++ {
		for _, ext := range []string{".hdr", ".img"} {
			b, err := os.ReadFile(strings.TrimSuffix(fx.cubeHdr, ".hdr") + ext)
			if err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(in, fmt.Sprintf("f%02d%s", i, ext)), b, 0o644); err != nil {
				return err
			}
		}
	}
	out := filepath.Join(root, "maps")
	other := filepath.Join(root, ".other.partial-1")
	if err := os.Mkdir(other, 0o755); err != nil {
		return err
	}
	partials := func() []string {
		m, _ := filepath.Glob(filepath.Join(root, ".maps.partial-*"))
		return m
	}
	left := 0
	for try := 0; try < 7 && left == 0; try++ {
		os.RemoveAll(out)
		cmd := exec.Command(BinPath, "--log-level", "error", "infer", "--run", fx.run, "--input", in, "--out", out)
		cmd.Dir = root
		cmd.Env = baseEnv(root)
		if err := cmd.Start(); err != nil {
			return err
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		// kill as soon as the staging folder appears
		for killed := false; !killed; {
			select {
			case <-done:
				killed = true
			default:
				if len(partials()) > 0 {
					_ = cmd.Process.Signal(syscall.SIGKILL)
					<-done
					killed = true
				}
				time.Sleep(time.Millisecond)
			}
		}
		left = len(partials())
	}
	if left == 0 {
		return errors.New("no kill left a staging folder in 7 tries; the trial proves nothing")
	}
	r := RunCLI(t, RunOptions{Dir: root}, "--log-level", "error", "infer", "--run", fx.run, "--input", in, "--out", out)
	if r.Exit != 0 {
		return fmt.Errorf("infer after the kill: exit %d: %s", r.Exit, lastLines(r.Stderr, 3))
	}
	if p := partials(); len(p) > 0 {
		return fmt.Errorf("%d staging folders of killed infers remain after a new infer: %v", len(p), p)
	}
	if _, err := os.Stat(other); err != nil {
		return fmt.Errorf("another output's staging folder was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "results.json")); err != nil {
		return err
	}
	return nil
}
