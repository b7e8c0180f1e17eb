package sweep

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// slurmSpec is three points, one of which fails (its data does not exist).
func slurmSpec(t *testing.T, work string) *Spec {
	good := filepath.Join(work, "data")
	tinyData(t, good)
	return &Spec{Name: "slurm", Bases: []Base{{Variant: "drcnn"}}, Overrides: tiny(good, 1), Metric: DefaultMetric,
		List: []Setting{{{Key: "training.seed", Value: "0"}}, {{Key: "training.seed", Value: "1"}},
			{{Key: "data.root", Value: filepath.Join(work, "nowhere")}, {Key: "data.generate_if_missing", Value: "false"}}}}
}

// checkSlurmResults collects the sweep the tasks wrote: two done, one failed with exit 1.
func checkSlurmResults(t *testing.T, dir string) {
	t.Helper()
	sum, err := Execute(Options{Dir: dir, Collect: true, Point: -1, Log: quietLog()})
	if !errors.Is(err, ErrPointsFailed) {
		t.Fatalf("collect: %v", err)
	}
	if sum.Done != 2 || sum.Failed != 1 {
		t.Fatalf("collect: %+v", sum)
	}
	r := sum.Results.Points
	if r[2].Status != Failed || r[2].ExitCode == nil || *r[2].ExitCode != 1 || !strings.Contains(r[2].Error, "nowhere") {
		t.Errorf("failing task's point: %+v", r[2])
	}
	for _, p := range r[:2] {
		if p.Status != Done || p.Test["auroc"] <= 0 {
			t.Errorf("point %d: %+v", p.Index, p)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "report.md")); err != nil {
		t.Error(err)
	}
}

// The job-array script's tasks each run one point. The short form runs the script's tasks
// with bash, as Slurm would with SLURM_ARRAY_TASK_ID set; the full form (make sweep-slurm,
// or go test without -short) submits it to a real single-node Slurm the test starts.
func TestSlurmJobArray(t *testing.T) {
	bin := spectraclipBinary(t)
	work := t.TempDir()
	dir := filepath.Join(work, "sweep")
	sum, err := Execute(Options{Dir: dir, Spec: slurmSpec(t, work), Emit: "slurm", Binary: bin, Point: -1, Log: quietLog(), Workdir: work,
		Slurm: SlurmOptions{CPUsPerTask: 1, Extra: []string{"time=00:10:00"}}})
	if err != nil {
		t.Fatal(err)
	}
	script, _ := os.ReadFile(sum.SlurmScript)
	for _, want := range []string{"#SBATCH --array=0-2\n", "#SBATCH --cpus-per-task=1\n", "#SBATCH --time=00:10:00\n",
		"#SBATCH --chdir=" + work + "\n", `--point "$SLURM_ARRAY_TASK_ID"`} {
		if !strings.Contains(string(script), want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if out, err := exec.Command("bash", "-n", sum.SlurmScript).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v %s", err, out)
	}
	if testing.Short() {
		for i := 0; i < 3; i++ {
			cmd := exec.Command("bash", sum.SlurmScript)
			cmd.Env = append(os.Environ(), fmt.Sprintf("SLURM_ARRAY_TASK_ID=%d", i), "SLURM_ARRAY_JOB_ID=1", "SLURM_CPUS_PER_TASK=1")
			out, err := cmd.CombinedOutput()
			if (err != nil) != (i == 2) {
				t.Fatalf("task %d: %v\n%s", i, err, out)
			}
		}
		checkSlurmResults(t, dir)
		return
	}
	s := startSlurm(t, work)
	cmd := exec.Command("sbatch", "--parsable", "--wait", sum.SlurmScript)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+s.conf)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // a guard against a hang
	defer cancel()
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+s.conf)
	out, err := cmd.Output()
	jobID := strings.TrimSpace(strings.SplitN(string(out), ";", 2)[0])
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("sbatch: %v\n%s\nslurmctld log:\n%s", err, out, s.log())
	}
	if err == nil {
		t.Errorf("sbatch --wait exited 0, but one task failed")
	}
	// The tasks' states as Slurm saw them.
	sc := exec.Command("scontrol", "show", "job", jobID)
	sc.Env = append(os.Environ(), "SLURM_CONF="+s.conf)
	show, err := sc.CombinedOutput()
	if err != nil {
		t.Fatalf("scontrol show job %s: %v\n%s", jobID, err, show)
	}
	states := map[string]string{}
	re := regexp.MustCompile(`ArrayTaskId=(\d+)[\s\S]*?JobState=(\w+)[\s\S]*?ExitCode=(\d+):(\d+)`)
	for _, m := range re.FindAllStringSubmatch(string(show), -1) {
		states[m[1]] = m[2] + " " + m[3]
	}
	if states["0"] != "COMPLETED 0" || states["1"] != "COMPLETED 0" || states["2"] != "FAILED 1" {
		t.Errorf("array task states %v\n%s", states, show)
	}
	checkSlurmResults(t, dir)
	for i := 0; i < 3; i++ {
		st, err := LoadState(dir, &Point{Index: i, ID: mustPlan(t, dir).Points[i].ID})
		if err != nil || st.SlurmTask != jobID+"_"+strconv.Itoa(i) {
			t.Errorf("point %d: slurm task %q, want %s_%d (%v)", i, st.SlurmTask, jobID, i, err)
		}
	}
}

func mustPlan(t *testing.T, dir string) *Plan {
	p, err := LoadPlan(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type slurm struct {
	dir, conf string
	pids      []string // pid files to stop, in order
}

func (s *slurm) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "slurmctld.log"))
	c, _ := os.ReadFile(filepath.Join(s.dir, "slurmd.log"))
	return string(b) + "\n--- slurmd:\n" + string(c)
}

// startSlurm starts munge (unless it runs), a controller and one compute node with a
// minimal configuration, or skips the test saying why it cannot.
func startSlurm(t *testing.T, work string) *slurm {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("a test Slurm needs root on Linux (munge and slurmd run as root here); run make sweep-slurm as root")
	}
	for _, b := range []string{"slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "munged", "munge", "unmunge"} {
		if _, err := exec.LookPath(b); err != nil {
			if _, err2 := os.Stat("/usr/sbin/" + b); err2 != nil {
				t.Skipf("Slurm is not installed (%s not found): apt-get install -y slurm-wlm munge", b)
			}
		}
	}
	s := &slurm{dir: filepath.Join(work, "slurm-test")}
	if err := os.MkdirAll(filepath.Join(s.dir, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	mungeOK := func() bool {
		return exec.Command("bash", "-c", "munge -n | unmunge >/dev/null").Run() == nil
	}
	if !mungeOK() {
		if err := os.MkdirAll("/run/munge", 0o755); err != nil {
			t.Skipf("cannot start munge: %v", err)
		}
		_ = exec.Command("chown", "munge:munge", "/run/munge").Run()
		if out, err := exec.Command("su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged --force").CombinedOutput(); err != nil {
			t.Skipf("cannot start munged: %v %s", err, out)
		}
		s.pids = append(s.pids, "/run/munge/munged.pid")
		if !waitFor(func() bool { return mungeOK() }) {
			t.Skip("munged started but munge -n | unmunge fails")
		}
	}
	host, err := exec.Command("hostname", "-s").Output()
	if err != nil {
		t.Skipf("hostname: %v", err)
	}
	h := strings.TrimSpace(string(host))
	memMB := availableMB() / 2
	port := 17000 + os.Getpid()%2000*2
	conf := fmt.Sprintf(`ClusterName=sweeptest
SlurmctldHost=%[1]s
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=%[2]d
SlurmdPort=%[3]d
StateSaveLocation=%[4]s/state
SlurmdSpoolDir=%[4]s/spool
SlurmctldPidFile=%[4]s/slurmctld.pid
SlurmdPidFile=%[4]s/slurmd.pid
SlurmctldLogFile=%[4]s/slurmctld.log
SlurmdLogFile=%[4]s/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
NodeName=%[1]s CPUs=%[5]d RealMemory=%[6]d State=UNKNOWN
PartitionName=test Nodes=%[1]s Default=YES MaxTime=INFINITE State=UP
`, h, port, port+1, s.dir, runtime.NumCPU(), memMB)
	s.conf = filepath.Join(s.dir, "slurm.conf")
	if err := os.WriteFile(s.conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("slurmctld", "-c", "-f", s.conf).CombinedOutput(); err != nil {
		t.Skipf("slurmctld does not start: %v %s\n%s", err, out, s.log())
	}
	s.pids = append([]string{filepath.Join(s.dir, "slurmctld.pid")}, s.pids...)
	if out, err := exec.Command("slurmd", "-f", s.conf).CombinedOutput(); err != nil {
		t.Skipf("slurmd does not start: %v %s\n%s", err, out, s.log())
	}
	s.pids = append([]string{filepath.Join(s.dir, "slurmd.pid")}, s.pids...)
	idle := waitFor(func() bool {
		c := exec.Command("sinfo", "-h", "-o", "%T")
		c.Env = append(os.Environ(), "SLURM_CONF="+s.conf)
		out, err := c.Output()
		return err == nil && strings.HasPrefix(strings.TrimSpace(string(out)), "idle")
	})
	if !idle {
		t.Skipf("the test Slurm node did not become idle:\n%s", s.log())
	}
	return s
}

// waitFor polls cond for up to a minute (a guard against a hang, not a timing).
func waitFor(cond func() bool) bool {
	for i := 0; i < 600; i++ {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

func availableMB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 1024
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "MemAvailable:" {
			kb, _ := strconv.Atoi(fs[1])
			return kb / 1024
		}
	}
	return 1024
}

// stop ends the daemons this test started, by the pids in their pid files.
func (s *slurm) stop(t *testing.T) {
	for _, pf := range s.pids {
		b, err := os.ReadFile(pf)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			t.Logf("%s (pid %d) did not stop on SIGTERM; killing it", pf, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
