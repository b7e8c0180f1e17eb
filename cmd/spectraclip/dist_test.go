package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spectraclip/spectraclip/bench"
	"github.com/spectraclip/spectraclip/dist"
	"github.com/spectraclip/spectraclip/torch"
	"github.com/spectraclip/spectraclip/trainer"
)

// envAsMain makes this test binary behave as the spectraclip program, so that the
// data-parallel launcher (which re-executes its own executable) and the tests can start
// real worker processes of it.
const envAsMain = "SPECTRACLIP_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	// the child processes of isolated benches (the bench command's default) re-run this
	// test binary
	if code, isChild := bench.ChildMain(); isChild {
		os.Exit(code)
	}
	if os.Getenv(envAsMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// spectraclipProc runs this binary as spectraclip with args and extra env; it returns the
// combined output and the error.
func spectraclipProc(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--log-level", "info"}, args...)...)
	cmd.Env = append(append(os.Environ(), envAsMain+"=1", "OMP_NUM_THREADS=1"), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func distTiny(data string, epochs string, batch int) []string {
	return []string{
		"data.root=" + data, "data.generate_if_missing=true", "data.synth.frames=12", "data.synth.height=32", "data.synth.width=32",
		"training.trainer.max_epochs=" + epochs, "+pipeline.detector.image_size=32", "training.threads=1",
		fmt.Sprintf("data.batch_size=%d", batch), "data.train_ids=[0,1,2,3,4,5,6,7]", "data.val_ids=[8,9,10]", "data.test_ids=[8,9,10,11]",
	}
}

func loadWeights(t *testing.T, file string) map[string][]float64 {
	t.Helper()
	m, err := torch.LoadTensors(file, torch.CPU)
	if err != nil {
		t.Fatal(err)
	}
	defer torch.FreeAll(m)
	out := map[string][]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, "__trainer__/") || !v.DType().IsFloat() {
			continue
		}
		s := torch.NewScope()
		f, err := s.ToDType(v, torch.Float64).Float64s()
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[k] = f
	}
	return out
}

func maxDiff(a, b []float64) float64 {
	d := 0.0
	for i := range a {
		if math.IsNaN(a[i]) && math.IsNaN(b[i]) {
			continue // both unfitted
		}
		d = math.Max(d, math.Abs(a[i]-b[i]))
		if math.IsNaN(a[i]) != math.IsNaN(b[i]) {
			return math.Inf(1)
		}
	}
	return d
}

// bceTrainrun is the DRCNN trainrun with the per-pixel mean BCE loss instead of the IoU loss:
// the IoU loss is a ratio of sums over the whole batch (and min-max normalises over it), so
// under data parallelism each rank's loss is its shard's IoU, as in PyTorch DDP, and 2 × b is
// not 1 × 2b for it; a loss that is a mean over the batch's pixels makes them equal.
func bceTrainrun(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "configs", "trainrun", "drcnn_adaclip.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "type: IoULoss", "type: AnomalyBCEWithLogits", 1)
	s = strings.Replace(s, "    normalize_method: minmax\n", "", 1)
	p := filepath.Join(dir, "drcnn_bce.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDataParallelMatchesOneProcess: 2 Gloo processes × batch 1 against 1 process × batch
// 2 on the synthetic set (the DRCNN trainrun with a mean BCE loss, see bceTrainrun) (8 training frames: equal shards, no padding). Each rank's k-th
// batch is half of the one process's k-th batch, so the averaged gradients are the same up
// to float32 rounding, and not bit for bit: one process sums the batch's per-pixel loss
// terms and their gradients over both frames in one reduction (and its batched convolution
// backward adds over the batch in its own order), the ranks sum each frame apart and the
// all-reduce adds the two halves; float32 addition is not associative. (Where the ranks'
// frames are the same, the mean is exact: TestDataParallelEqualsOneProcessBitForBit.)
// Gradient clipping is off, so that a gradient scaled ×2 (summed instead of averaged)
// cannot be clipped back to the same step (summing instead of averaging moved the trained
// weights by 7e-4 to 1.3e-2, 70 to 1300 times the tolerance; at the default clipping of 1.0
// it was 3e-4 to 9e-3: the clipping already absorbed part of it). Stated tolerances: trained weights within 1e-5 absolute (3.7e-7 seen), pooled
// val/test metrics within 1e-3 (pixel counts exact up to decisions within rounding of the
// threshold), and the statistical fit (normaliser min/max, the PCA initialisation of the
// mixer, pooled over the ranks) the same within 1e-6 relative. Every write comes from rank
// 0 alone: the run directory holds one TensorBoard file.
func TestDataParallelMatchesOneProcess(t *testing.T) {
	needGloo(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	cfg := bceTrainrun(t, dir)
	// SGD with a small step: Adam's first steps move each weight by ±lr whatever the
	// gradient's size (a gradient component at rounding level can flip a step), and at
	// lr 0.05 the min-max normalised mixer amplifies float32 rounding (2 epochs: 2e-4 at lr
	// 0.05, 2e-6 at 0.005). The mixer starts from xavier: the PCA initialisation's trailing
	// eigenvectors are nearly degenerate on the synthetic set, so rounding can rotate them
	// (the pooled fit itself is checked on the PCA baseline, TestDataParallelStatisticalFitIsPooled).
	sgd := []string{"training.optimizer.name=sgd", "training.optimizer.lr=0.005", "pipeline.channel_mixer.init_method=xavier", "training.trainer.gradient_clip_val=0"}
	if out, err := spectraclipProc(t, nil, append(append([]string{"train", "-c", cfg, "--out", one}, distTiny(data, "2", 2)...), sgd...)...); err != nil {
		t.Fatalf("one process: %v\n%s", err, out)
	}
	out, err := spectraclipProc(t, nil, append(append([]string{"train", "-c", cfg, "--out", two, "--nproc-per-node", "2"}, distTiny(data, "2", 1)...), sgd...)...)
	if err != nil {
		t.Fatalf("two processes: %v\n%s", err, out)
	}
	if !strings.Contains(out, "[rank 1] ") || !strings.Contains(out, "allreduce_bytes_per_step") {
		t.Fatalf("no rank-prefixed worker output or all-reduce size in:\n%s", out)
	}
	// the fit: compare the fitted buffers of the final weights
	// (the normaliser's are never trained) and the fit logged by both
	wa := loadWeights(t, filepath.Join(one, "checkpoints", "last", "weights.pt"))
	wb := loadWeights(t, filepath.Join(two, "checkpoints", "last", "weights.pt"))
	if len(wa) == 0 || len(wa) != len(wb) {
		t.Fatalf("checkpoints hold %d and %d tensors", len(wa), len(wb))
	}
	keys := make([]string, 0, len(wa))
	for k := range wa {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b, ok := wb[k]
		if !ok || len(b) != len(wa[k]) {
			t.Fatalf("%s: missing or resized in the 2-process run", k)
		}
		d := maxDiff(wa[k], b)
		tol := 1e-5
		if strings.Contains(k, "running_") {
			tol = 1e-6 * math.Max(1, math.Abs(wa[k][0]))
		}
		t.Logf("%-40s max |Δ| %.3g", k, d)
		if d > tol {
			t.Errorf("%s differs by %.3g (tolerance %.3g)", k, d, tol)
		}
	}
	ma, mb := readMetrics(t, one), readMetrics(t, two)
	for _, split := range []string{"val", "test"} {
		a, b := ma[split].(map[string]any), mb[split].(map[string]any)
		for k, v := range a {
			fa, _ := v.(float64)
			fb, _ := b[k].(float64)
			if math.Abs(fa-fb) > 1e-3 {
				t.Errorf("%s %s: one process %v, two %v", split, k, fa, fb)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(two, "tb", "*"))
	if len(files) != 1 {
		t.Errorf("tb/ of the 2-process run holds %v: want rank 0's one file", files)
	}
}

// TestDataParallelStatisticalFitIsPooled: the PCA baseline's fit (covariance over the
// training pixels) pooled over 2 ranks equals the one-process fit within 1e-5 (float32
// buffers of a float64 fit whose sums are added in another order; 0 seen), on even shards
// and on uneven ones (7 frames: before the fit used unpadded shards, the padding's repeat
// of a frame moved the explained variance by 0.058), and the val/test metrics pooled over
// the ranks equal the one-process metrics.
func TestDataParallelStatisticalFitIsPooled(t *testing.T) {
	needGloo(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// 8 training frames: shards of 4 and 4; 7: shards of 4 and 3, where the training
	// sampler would pad rank 1's with a repeat of rank 0's first frame (the fit must not
	// count it twice)
	for _, ids := range []string{"[0,1,2,3,4,5,6,7]", "[0,1,2,3,4,5,6]"} {
		t.Run(fmt.Sprintf("%d_frames", strings.Count(ids, ",")+1), func(t *testing.T) {
			fitPooled(t, data, filepath.Join(dir, fmt.Sprintf("%d", strings.Count(ids, ",")+1)), "data.train_ids="+ids)
		})
	}
}

func fitPooled(t *testing.T, data, dir, trainIDs string) {
	one, two := filepath.Join(dir, "one"), filepath.Join(dir, "two")
	if out, err := spectraclipProc(t, nil, append(append([]string{"train", "--variant", "pca", "--out", one}, distTiny(data, "0", 2)...), trainIDs)...); err != nil {
		t.Fatalf("one process: %v\n%s", err, out)
	}
	if out, err := spectraclipProc(t, nil, append(append([]string{"train", "--variant", "pca", "--out", two, "--nproc-per-node", "2"}, distTiny(data, "0", 1)...), trainIDs)...); err != nil {
		t.Fatalf("two processes: %v\n%s", err, out)
	}
	wa := loadWeights(t, filepath.Join(one, "pipeline.weights.pt"))
	wb := loadWeights(t, filepath.Join(two, "pipeline.weights.pt"))
	n := 0
	for k, a := range wa {
		b, ok := wb[k]
		if !ok {
			t.Fatalf("%s missing from the 2-process fit", k)
		}
		d := maxDiff(a, b)
		t.Logf("%-40s max |Δ| %.3g", k, d)
		if !(d <= 1e-5) {
			t.Errorf("%s: pooled fit differs by %.3g", k, d)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no fitted tensors compared")
	}
	// the same weights give the same pooled metrics: the 3 validation frames are split 2 + 1
	// (no padding) and every pixel's score is pooled, so exact AUROC/AP and the counts
	// equal the one-process values (1e-12)
	ma, mb := readMetrics(t, one), readMetrics(t, two)
	for _, split := range []string{"val", "test"} {
		a, b := ma[split].(map[string]any), mb[split].(map[string]any)
		if len(a) == 0 || len(a) != len(b) {
			t.Fatalf("%s metrics: %v vs %v", split, a, b)
		}
		for k, v := range a {
			fa, _ := v.(float64)
			fb, _ := b[k].(float64)
			if math.Abs(fa-fb) > 1e-12 {
				t.Errorf("%s %s: one process %v, two %v", split, k, fa, fb)
			}
		}
	}
}

// TestDataParallelRankDeathAndResume: rank 1 is killed at training step 5 (epoch 2 of 3 with
// 4 steps an epoch); rank 0 ends with an error naming rank 1 within the 10 s timeout (not a
// hang), the launcher names the rank and stops; the run directory keeps epoch 1's
// checkpoint. Resuming with another world size is refused; resuming with 2 processes trains
// epochs 2 and 3 only (rank 0's "epoch done" lines; a resume that started again from
// scratch would train 1 to 3) and ends byte for byte as an uninterrupted 2-process run of
// the same command (weights files and metrics.json, sameFinishedRun).
func TestDataParallelRankDeathAndResume(t *testing.T) {
	needGloo(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := spectraclipProc(t, nil, "synth", "--out", data, "--frames", "12", "--height", "32", "--width", "32"); err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	run, ref := filepath.Join(dir, "run"), filepath.Join(dir, "ref")
	argsTo := func(out string) []string {
		return append([]string{"train", "--variant", "drcnn", "--out", out, "--nproc-per-node", "2", "--dist-timeout", "10s"}, distTiny(data, "3", 1)...)
	}
	if out, err := spectraclipProc(t, nil, argsTo(ref)...); err != nil {
		t.Fatalf("uninterrupted 2-process run: %v\nrank 0:\n%s", err, rankLines(out, 0))
	}
	args := argsTo(run)
	start := time.Now()
	out, err := spectraclipProc(t, []string{trainer.EnvTestDistKill + "=1:5"}, args...)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("the run survived the death of rank 1:\n%s", out)
	}
	if !strings.Contains(out, "rank 1 of 2 failed") {
		t.Errorf("the launcher's error does not name rank 1:\n%s", out)
	}
	if !strings.Contains(out, "rank 1 stopped") && !strings.Contains(out, "[rank 0] error:") {
		t.Logf("rank 0 was stopped by the launcher before it reported")
	}
	if took > 2*time.Minute { // a hang guard, not a speed check
		t.Fatalf("took %s to fail", took)
	}
	if _, err := os.Stat(filepath.Join(run, "checkpoints", "last", "weights.pt")); err != nil {
		t.Fatalf("no checkpoint to resume from: %v\n%s", err, out)
	}
	// another world size is refused with one line naming both
	_, err = spectraclipProc(t, nil, "train", "--resume", filepath.Join(run, "checkpoints", "last"))
	if err == nil {
		t.Fatal("resume in one process of a 2-process run was accepted")
	}
	out1, _ := spectraclipProc(t, nil, "train", "--resume", filepath.Join(run, "checkpoints", "last"))
	if !strings.Contains(out1, "trained with 2 data-parallel process(es), this one has 1") {
		t.Errorf("world-size refusal: %s", lastLine(out1))
	}
	// the checkpoint's own record of where it stands
	var st struct {
		Epoch      int   `json:"epoch"`
		GlobalStep int64 `json:"global_step"`
	}
	if b, err := os.ReadFile(filepath.Join(run, "checkpoints", "last", "state.json")); err != nil || json.Unmarshal(b, &st) != nil {
		t.Fatalf("checkpoints/last/state.json: %v", err)
	}
	if st.Epoch != 1 || st.GlobalStep != 4 {
		t.Fatalf("checkpoints/last holds epoch %d, step %d: want epoch 1, step 4 (rank 1 died at step 5)", st.Epoch, st.GlobalStep)
	}
	out2, err := spectraclipProc(t, nil, "train", "--resume", filepath.Join(run, "checkpoints", "last"), "--nproc-per-node", "2")
	if err != nil {
		t.Fatalf("resume: %v\nrank 0:\n%s\nlauncher: %s", err, rankLines(out2, 0), lastLine(out2))
	}
	if got := epochsDone(rankLines(out2, 0)); !slices.Equal(got, []int{2, 3}) {
		t.Errorf("the resume from epoch 1 completed epochs %v: want [2 3] (not a restart from scratch)", got)
	}
	if h, _ := readMetrics(t, run)["history"].([]any); len(h) != 4 {
		t.Errorf("resumed run has %d entries of history, want 4 (epoch 0, the initialisation, and 3 training epochs)", len(h))
	}
	if why := sameFinishedRun(t, ref, run); why != "" {
		t.Errorf("the resumed 2-process run differs from the uninterrupted one: %s", why)
	}
}

// epochsDone lists the epochs of a rank's "epoch done" log lines, in order.
func epochsDone(log string) []int {
	var out []int
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `msg="epoch done"`) {
			continue
		}
		if m := epochField.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			out = append(out, n)
		}
	}
	return out
}

var epochField = regexp.MustCompile(`\bepoch=(\d+)\b`)

// TestDataParallelSurvivorNamesTheRank: without the launcher (torchrun-style env set by the
// test), one rank dies at step 2; the other fails on its own within the 10 s timeout with
// one error line naming it: rank 1 by its silent heartbeat, rank 0 as the store's server
// (LibTorch 1.13's store client thread may throw when the server resets the connection:
// that too ends as the one-line error, exit status 1, never a C++ abort).
func TestDataParallelSurvivorNamesTheRank(t *testing.T) {
	needGloo(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := spectraclipProc(t, nil, "synth", "--out", data, "--frames", "12", "--height", "32", "--width", "32"); err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	for _, c := range []struct {
		killed int
		want   string
	}{{1, "rank 1 stopped (its process died or hangs)"}, {0, "rank 0"}} {
		port := freeTestPort(t)
		args := append([]string{"train", "--variant", "drcnn", "--out", filepath.Join(dir, fmt.Sprintf("run%d", c.killed)), "--dist-timeout", "10s"}, distTiny(data, "2", 1)...)
		outs := make([]string, 2)
		errs := make([]error, 2)
		done := make(chan int, 2)
		for r := 0; r < 2; r++ {
			env := []string{fmt.Sprintf("RANK=%d", r), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port), fmt.Sprintf("%s=%d:2", trainer.EnvTestDistKill, c.killed)}
			go func(r int, env []string) {
				outs[r], errs[r] = spectraclipProc(t, env, args...)
				done <- r
			}(r, env)
		}
		<-done
		<-done
		survivor := 1 - c.killed
		if errs[survivor] == nil {
			t.Fatalf("rank %d succeeded after rank %d died:\n%s", survivor, c.killed, outs[survivor])
		}
		line := lastLine(outs[survivor])
		if !strings.HasPrefix(line, "error: ") || !strings.Contains(line, c.want) || strings.Contains(outs[survivor], "terminate called") {
			t.Fatalf("rank %d after rank %d died: want one error line naming it (%q), got:\n%s", survivor, c.killed, c.want, outs[survivor])
		}
		t.Logf("rank %d: %s", survivor, line)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// TestBadDistEnv: broken launch environments give one error line naming the variable.
func TestBadDistEnv(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1"}, "MASTER_PORT is not set"},
		{[]string{"RANK=2", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29999"}, "RANK=2 must be below WORLD_SIZE=2"},
		{[]string{"RANK=x", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29999"}, `RANK="x": not an integer`},
		{[]string{"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=99999"}, "MASTER_PORT=99999: not a TCP port"},
		{[]string{"SLURM_PROCID=3", "SLURM_NTASKS=2", "SLURM_JOB_ID=7"}, "SLURM_PROCID=3 must be below SLURM_NTASKS=2"},
	} {
		out, err := spectraclipProc(t, c.env, append([]string{"train", "--variant", "drcnn", "--out", filepath.Join(dir, "run")}, distTiny(filepath.Join(dir, "data"), "1", 1)...)...)
		if err == nil {
			t.Fatalf("%v: accepted", c.env)
		}
		line := lastLine(out)
		if !strings.HasPrefix(line, "error: ") || !strings.Contains(line, c.want) || strings.Contains(out, "panic") {
			t.Errorf("%v: want one error line with %q, got:\n%s", c.env, c.want, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "run")); err == nil {
			t.Errorf("%v: a run directory was created", c.env)
		}
	}
}

// needGloo skips a data-parallel test on a build of csrc/ without the Gloo backend (the
// PyPI torch's: its wheel ships no gloo headers), saying why;
// TestDataParallelRefusedWithoutGloo checks what such a build tells the user instead.
func needGloo(t *testing.T) {
	t.Helper()
	if why := torch.GlooUnavailable(); why != "" {
		t.Skipf("LibTorch %s: no Gloo backend: %s", torch.Version(), why)
	}
}

// TestDataParallelRefusedWithoutGloo: on a build without Gloo, CPU data-parallel training
// stops: each rank says in one line that Gloo is missing and why, and the launcher fails.
func TestDataParallelRefusedWithoutGloo(t *testing.T) {
	why := torch.GlooUnavailable()
	if why == "" {
		t.Skip("this build has the Gloo backend: the data-parallel tests run instead")
	}
	dir := t.TempDir()
	out, err := spectraclipProc(t, nil, append([]string{"train", "--variant", "drcnn", "--nproc-per-node", "2", "--dist-timeout", "20s", "--out", filepath.Join(dir, "run")},
		distTiny(filepath.Join(dir, "data"), "1", 1)...)...)
	if err == nil {
		t.Fatalf("data-parallel training without Gloo was accepted:\n%s", out)
	}
	// the launcher reports the first rank to fail last; that rank's own line says why
	want := "] error: data-parallel training on the CPU needs the Gloo backend, which this build of csrc/ (LibTorch " + torch.Version() + ") lacks: " + why
	last := lastLine(out)
	if !strings.Contains(out, want+"\n") || !strings.HasPrefix(last, "error: rank ") || !strings.Contains(last, " of 2 failed") || strings.Contains(out, "panic") {
		t.Errorf("want the line %q and the launcher's error last, got:\n%s", want, out)
	}
}

func freeTestPort(t *testing.T) int {
	t.Helper()
	p, err := dist.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDataParallelUnderSlurmEnv: two processes given only Slurm's variables (as srun sets
// them; MASTER_PORT set because a test cannot pick SLURM_JOB_ID's port) train together:
// one run directory, rank 0's metrics.json, no error.
func TestDataParallelUnderSlurmEnv(t *testing.T) {
	needGloo(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := spectraclipProc(t, nil, "synth", "--out", data, "--frames", "12", "--height", "32", "--width", "32"); err != nil {
		t.Fatalf("synth: %v\n%s", err, out)
	}
	run := filepath.Join(dir, "run")
	port := freeTestPort(t)
	args := append([]string{"train", "--variant", "drcnn", "--out", run, "--dist-timeout", "30s"}, distTiny(data, "1", 1)...)
	errs := make(chan error, 2)
	outs := make([]string, 2)
	for r := 0; r < 2; r++ {
		env := []string{fmt.Sprintf("SLURM_PROCID=%d", r), "SLURM_NTASKS=2", fmt.Sprintf("SLURM_LOCALID=%d", r), "SLURM_NTASKS_PER_NODE=2", "SLURM_NNODES=1", "SLURM_JOB_ID=42", fmt.Sprintf("MASTER_PORT=%d", port)}
		go func(r int, env []string) {
			var err error
			outs[r], err = spectraclipProc(t, env, args...)
			errs <- err
		}(r, env)
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("a Slurm rank failed: %v\n%s\n----\n%s", err, outs[0], outs[1])
		}
	}
	if !strings.Contains(outs[0], "from=slurm") || !strings.Contains(outs[1], "rank=1") {
		t.Fatalf("the ranks did not join from Slurm's variables:\n%s\n----\n%s", outs[0], outs[1])
	}
	if h, _ := readMetrics(t, run)["history"].([]any); len(h) != 2 {
		t.Fatalf("metrics.json history has %d entries, want 2 (epoch 0, the initialisation, and 1 training epoch)", len(h))
	}
}
