package dist

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LaunchOptions describe a local data-parallel launch (torchrun --nproc-per-node N).
type LaunchOptions struct {
	N    int      // worker processes
	Exe  string   // the program to run (default: this executable)
	Args []string // the workers' arguments
	// Out and Err receive every worker's standard output and error lines prefixed with
	// "[rank R] " (default os.Stdout and os.Stderr).
	Out, Err io.Writer
	// Env is added to every worker's environment.
	Env []string
	// Grace is how long the other workers get after SIGTERM before SIGKILL when one fails.
	Grace time.Duration
}

// distVars are the variables a launch sets; inherited values are dropped.
var distVars = []string{"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK", "NODE_RANK", EnvLauncherFD}

// FreePort returns a TCP port free on the loopback right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type exit struct {
	rank int
	err  error
}

// Launch starts N workers on this machine with RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT, prefixes their output
// lines with their rank, and waits for all. When one fails, the others are stopped
// (SIGTERM, then SIGKILL after Grace) and the error names the rank that failed first.
// SIGINT and SIGTERM sent to the launcher are passed on to the workers; SIGTSTP (Ctrl-Z)
// stops them and the launcher, SIGCONT continues them.
//
// The workers die with the launcher, however it ends (SIGKILL included), so that none is
// left training and writing the run directory, holding its lock against a resume: on Linux
// the kernel SIGKILLs each when the thread that started it exits (Pdeathsig; this function
// keeps its goroutine on that thread until it returns), and every worker watches a pipe
// whose write end only the launcher holds (WatchLauncher, EnvLauncherFD) and SIGKILLs itself
// at its end of file. The workers share a process group of their own, led by rank 0: the
// launcher signals them all at once, and a terminal's Ctrl-C reaches them through it.
func Launch(o LaunchOptions) error {
	if o.N < 1 {
		return fmt.Errorf("--nproc-per-node %d: want at least 1", o.N)
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("launch: finding this program: %w", err)
		}
		o.Exe = exe
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Err == nil {
		o.Err = os.Stderr
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	port, err := FreePort()
	if err != nil {
		return fmt.Errorf("launch: finding a free port: %w", err)
	}
	var base []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		drop := strings.HasPrefix(k, "SLURM_PROCID") || strings.HasPrefix(k, "SLURM_NTASKS") || strings.HasPrefix(k, "SLURM_LOCALID")
		for _, v := range distVars {
			drop = drop || k == v
		}
		if !drop {
			base = append(base, kv)
		}
	}
	// the workers' parent-death signal fires when this thread exits: stay on it
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// the launcher's lifeline: the workers read the read end; this process alone holds the
	// write end (close-on-exec), which the kernel closes when it dies
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	defer lifeW.Close() // and keeps it reachable (no finalizer closes it) until then
	defer lifeR.Close()
	var outMu sync.Mutex
	cmds := make([]*exec.Cmd, o.N)
	var pipes sync.WaitGroup
	exits := make(chan exit, o.N)
	started := 0
	pgid := 0 // the workers' process group (rank 0's pid) once rank 0 runs
	stopAll := func(sig os.Signal) {
		if s, ok := sig.(syscall.Signal); ok && pgid > 0 && signalGroup(pgid, s) == nil {
			return
		}
		for _, c := range cmds[:started] {
			if c != nil && c.Process != nil {
				_ = c.Process.Signal(sig)
			}
		}
	}
	// no worker is reaped before every one has joined rank 0's group (a reaped leader's
	// group would be gone)
	allStarted := make(chan struct{})
	releaseWaits := sync.OnceFunc(func() { close(allStarted) })
	defer releaseWaits()
	for r := 0; r < o.N; r++ {
		c := exec.Command(o.Exe, o.Args...)
		c.Env = append(append(append([]string(nil), base...), o.Env...),
			"RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(o.N), "LOCAL_RANK="+strconv.Itoa(r),
			"LOCAL_WORLD_SIZE="+strconv.Itoa(o.N), "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port),
			EnvLauncherFD+"=3")
		c.Stdin = nil
		c.ExtraFiles = []*os.File{lifeR} // descriptor 3
		c.SysProcAttr = workerAttr(pgid)
		stdout, err := c.StdoutPipe()
		var stderr io.ReadCloser
		if err == nil {
			stderr, err = c.StderrPipe()
		}
		if err != nil {
			stopAll(syscall.SIGKILL)
			return fmt.Errorf("launch rank %d: %w", r, err)
		}
		if err := c.Start(); err != nil {
			stopAll(syscall.SIGKILL)
			return fmt.Errorf("launch rank %d: %s: %w", r, o.Exe, err)
		}
		cmds[r] = c
		started++
		if r == 0 && c.SysProcAttr != nil && c.SysProcAttr.Setpgid {
			pgid = c.Process.Pid
		}
		var read sync.WaitGroup
		for _, p := range []struct {
			rd io.Reader
			w  io.Writer
		}{{stdout, o.Out}, {stderr, o.Err}} {
			pipes.Add(1)
			read.Add(1)
			go func(r int, rd io.Reader, w io.Writer) {
				defer pipes.Done()
				defer read.Done()
				sc := bufio.NewScanner(rd)
				sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
				prefix := fmt.Sprintf("[rank %d] ", r)
				for sc.Scan() {
					outMu.Lock()
					fmt.Fprintln(w, prefix+sc.Text())
					outMu.Unlock()
				}
			}(r, p.rd, p.w)
		}
		go func(r int, c *exec.Cmd) {
			read.Wait() // Wait closes the pipes: read them to the end first
			<-allStarted
			exits <- exit{r, c.Wait()}
		}(r, c)
	}
	releaseWaits()
	sigs := make(chan os.Signal, 2)
	// SIGINT and SIGTERM are passed on. The ranks have a process group of their own, so the
	// terminal's Ctrl-Z (SIGTSTP, to the launcher's group) and fg's SIGCONT would reach only
	// the launcher: they are passed on as SIGSTOP and SIGCONT, and the launcher then stops
	// itself, as the default action would have.
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGTSTP, syscall.SIGCONT)
	defer signal.Stop(sigs)
	var first *exit
	var kill <-chan time.Time
	for left := o.N; left > 0; {
		select {
		case e := <-exits:
			left--
			if e.err != nil && first == nil {
				first = &e
				stopAll(syscall.SIGTERM)
				kill = time.After(o.Grace)
			}
		case s := <-sigs:
			switch s {
			case syscall.SIGTSTP:
				stopAll(syscall.SIGSTOP)
				_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
			case syscall.SIGCONT:
				stopAll(syscall.SIGCONT)
			default:
				stopAll(s)
			}
		case <-kill:
			stopAll(syscall.SIGKILL)
		}
	}
	pipes.Wait()
	if first != nil {
		return fmt.Errorf("rank %d of %d failed (%v); the other ranks were stopped", first.rank, o.N, first.err)
	}
	return nil
}
