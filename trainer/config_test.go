package trainer

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spectraclip/spectraclip/run"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/internal/testpy"

	"github.com/spectraclip/spectraclip/torch"
)

func TestLoadConfigVariants(t *testing.T) {
	for _, v := range config.VariantNames {
		cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: v})
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if cfg.Variant != v || cfg.Data.BatchSize != 2 || cfg.Training.Seed != 42 {
			t.Errorf("%s: variant %q batch %d seed %d", v, cfg.Variant, cfg.Data.BatchSize, cfg.Training.Seed)
		}
		// every variant uses the same anomaly definition (stone) so metrics compare
		dn := cfg.Pipeline["data_node"]
		if got := dn["anomaly_class_ids"]; !sameInts(got, []int{3}) {
			t.Errorf("%s: anomaly_class_ids %v, want [3]", v, got)
		}
	}
}

func sameInts(v any, want []int) bool {
	l, ok := v.([]any)
	if !ok || len(l) != len(want) {
		return false
	}
	for i, e := range l {
		if n, ok := e.(int); !ok || n != want[i] {
			return false
		}
	}
	return true
}

func TestOverrides(t *testing.T) {
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: []string{
		"training.optimizer.lr=3e-4", "data.batch_size=3", "pipeline.channel_mixer.reduction_scheme=[61,8,3]",
		"training.trainer.enable_progress_bar=false", "+pipeline.detector.image_size=64",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Training.Optimizer.LR != 3e-4 || cfg.Data.BatchSize != 3 || cfg.Training.Trainer.EnableProgressBar {
		t.Errorf("overrides not applied: lr %g batch %d bar %v", cfg.Training.Optimizer.LR, cfg.Data.BatchSize, cfg.Training.Trainer.EnableProgressBar)
	}
	if !sameInts(cfg.Pipeline["channel_mixer"]["reduction_scheme"], []int{61, 8, 3}) {
		t.Errorf("list override: %v", cfg.Pipeline["channel_mixer"]["reduction_scheme"])
	}
	if cfg.Pipeline["detector"]["image_size"] != 64 {
		t.Errorf("added key: %v", cfg.Pipeline["detector"]["image_size"])
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	cases := []struct {
		name string
		o    config.LoadOptions
		file string
		want []string
	}{
		{"unknown override key", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.optimizer.lrr=1"}}, "", []string{"unknown key", "training.optimizer.lrr", "lr"}},
		{"malformed override", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.optimizer.lr"}}, "", []string{"want key=value"}},
		{"wrong type", config.LoadOptions{Variant: "drcnn", Overrides: []string{"data.batch_size=two"}}, "", []string{"batch_size"}},
		{"bad optimizer", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.optimizer.name=rmsprop"}}, "", []string{"training.optimizer.name", "adamw"}},
		{"bad lr", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.optimizer.lr=0"}}, "", []string{"training.optimizer.lr"}},
		{"unknown variant", config.LoadOptions{Variant: "svm"}, "", []string{"unknown variant", "pca, drcnn, concrete"}},
		{"unknown top-level key in file", config.LoadOptions{File: bad}, "name: x\nbogus: 1\ndefaults: [data/lentils_synth, training/default]\npipeline: {a: {type: MinMaxNormalizer}}\n", []string{"bogus"}},
		{"node without type", config.LoadOptions{File: bad}, "name: x\ndefaults: [data/lentils_synth, training/default]\npipeline: {a: {eps: 1}}\n", []string{"pipeline.a.type"}},
		{"loss node missing", config.LoadOptions{File: bad}, "name: x\ndefaults: [data/lentils_synth, training/default]\npipeline: {a: {type: MinMaxNormalizer}}\nloss_nodes: [iou]\n", []string{"iou", "not in pipeline"}},
		{"missing file", config.LoadOptions{File: filepath.Join(dir, "nope.yaml")}, "", []string{"nope.yaml"}},
		{"bad env", config.LoadOptions{Variant: "drcnn", Environ: []string{"SPECTRACLIP_DATA__BATCH_SIZE=[1"}}, "", []string{"SPECTRACLIP_DATA__BATCH_SIZE"}},
		// issue 16.7: unbounded or silently accepted values
		{"threads unbounded", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.threads=100000"}}, "", []string{"training.threads", "100000"}},
		{"threads negative", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.threads=-4"}}, "", []string{"training.threads", "-4"}},
		{"fractional epochs", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.trainer.max_epochs=2.5"}}, "", []string{"max_epochs", "2.5"}},
		{"fractional batch size", config.LoadOptions{Variant: "drcnn", Overrides: []string{"data.batch_size=1.5"}}, "", []string{"batch_size", "1.5"}},
		{"negative clip", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.trainer.gradient_clip_val=-1"}}, "", []string{"training.trainer.gradient_clip_val", "-1"}},
		{"unknown env key", config.LoadOptions{Variant: "drcnn", Environ: []string{"SPECTRACLIP_TRAINING__OPTIMIZER__LRR=1"}}, "", []string{"SPECTRACLIP_TRAINING__OPTIMIZER__LRR", "training.optimizer.lrr"}},
		{"unknown env variable", config.LoadOptions{Variant: "drcnn", Environ: []string{"SPECTRACLIP_THREADS=4"}}, "", []string{"SPECTRACLIP_THREADS", "SPECTRACLIP_PLUGIN_CACHE"}},
		// issue 11.4: a monitor must name something that is logged
		{"checkpoint monitor typo", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.callbacks.checkpoint.monitor=metrics_anomaly/f1"}}, "", []string{"training.callbacks.checkpoint.monitor", "metrics_anomaly/f1", "metrics_anomaly/f1_score", "val/loss"}},
		{"early stopping monitor typo", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.callbacks.early_stopping.enabled=true", "training.callbacks.early_stopping.monitor=val/los"}}, "", []string{"training.callbacks.early_stopping.monitor", "val/los", "val/loss"}},
		{"scheduler monitor typo", config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.scheduler.name=reduce_on_plateau", "training.scheduler.monitor=metrics_anomaly/iuo"}}, "", []string{"training.scheduler.monitor", "metrics_anomaly/iuo", "metrics_anomaly/iou"}},
		// issue 16.9: an unknown nested key lists the keys of its own section
		{"unknown nested key", config.LoadOptions{Variant: "drcnn", Overrides: []string{"+training.trainer.foo=1"}}, "", []string{"training.trainer", "foo", "max_epochs", "gradient_clip_val"}},
		{"unknown data key", config.LoadOptions{Variant: "drcnn", Overrides: []string{"+data.rooot=x"}}, "", []string{"data", "rooot", "root", "generate_if_missing"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.file != "" {
				if err := os.WriteFile(bad, []byte(c.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := config.LoadConfig(c.o)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			// the reason comes first, not mapstructure's preamble; nested errors list nested keys
			if strings.Contains(err.Error(), "decoding failed") || (strings.Contains(c.name, "nested") && strings.Contains(err.Error(), "top-level")) {
				t.Errorf("error %q: reason not first, or the wrong level's keys", err)
			}
		})
	}
}

func TestEnvOverride(t *testing.T) {
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "concrete", Environ: []string{"SPECTRACLIP_TRAINING__OPTIMIZER__LR=0.0125", "SPECTRACLIP_PLUGIN_CACHE=/x", "HOME=/root"},
		Overrides: []string{"data.batch_size=4"}})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Training.Optimizer.LR != 0.0125 || cfg.Data.BatchSize != 4 {
		t.Errorf("env lr %g batch %d", cfg.Training.Optimizer.LR, cfg.Data.BatchSize)
	}
	// the command line wins over the environment
	cfg, _, err = config.LoadConfig(config.LoadOptions{Variant: "concrete", Environ: []string{"SPECTRACLIP_TRAINING__OPTIMIZER__LR=0.0125"}, Overrides: []string{"training.optimizer.lr=0.5"}})
	if err != nil || cfg.Training.Optimizer.LR != 0.5 {
		t.Fatalf("precedence: %v %v", err, cfg)
	}
}

func TestResolvedConfigRoundTrip(t *testing.T) {
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "pca", Overrides: []string{"training.seed=7"}})
	if err != nil {
		t.Fatal(err)
	}
	y, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, y, 0o644); err != nil {
		t.Fatal(err)
	}
	back, _, err := config.LoadConfig(config.LoadOptions{File: p})
	if err != nil {
		t.Fatalf("resolved config does not load back: %v\n%s", err, y)
	}
	if back.Training.Seed != 7 || back.Name != cfg.Name || len(back.Pipeline) != len(cfg.Pipeline) || len(back.Connections) != len(cfg.Connections) {
		t.Errorf("round trip lost values")
	}
}

// Schedulers against PyTorch's closed forms.
func TestSchedulers(t *testing.T) {
	t.Run("cosine", func(t *testing.T) {
		s, err := NewScheduler(config.SchedulerConfig{Name: "cosine", MinLR: 1e-4}, 0.1, 10)
		if err != nil {
			t.Fatal(err)
		}
		lr := 0.1
		for e := 0; e < 10; e++ {
			lr = s.Step(e, lr, math.NaN())
			want := 1e-4 + (0.1-1e-4)*(1+math.Cos(math.Pi*float64(e+1)/10))/2
			if math.Abs(lr-want) > 1e-12 {
				t.Fatalf("epoch %d: %g want %g", e, lr, want)
			}
		}
	})
	t.Run("step", func(t *testing.T) {
		s, _ := NewScheduler(config.SchedulerConfig{Name: "step", StepSize: 3, Gamma: 0.5}, 1, 10)
		lr := 1.0
		for e := 0; e < 9; e++ {
			lr = s.Step(e, lr, math.NaN())
			want := math.Pow(0.5, float64((e+1)/3))
			if math.Abs(lr-want) > 1e-12 {
				t.Fatalf("epoch %d: %g want %g", e, lr, want)
			}
		}
	})
	t.Run("plateau max", func(t *testing.T) {
		s, _ := NewScheduler(config.SchedulerConfig{Name: "reduce_on_plateau", Mode: "max", Factor: 0.5, Patience: 1, Threshold: 1e-4, ThresholdMode: "rel", Cooldown: 1, MinLR: 0.2, Eps: 1e-8}, 1, 20)
		// improving, then flat: reduce after patience+1 bad epochs, then cooldown
		vals := []float64{0.1, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2}
		want := []float64{1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25}
		lr := 1.0
		for e, v := range vals {
			lr = s.Step(e, lr, v)
			if math.Abs(lr-want[e]) > 1e-12 {
				t.Fatalf("epoch %d: lr %g want %g", e, lr, want[e])
			}
		}
		// min_lr floor
		for e := 8; e < 20; e++ {
			lr = s.Step(e, lr, 0.2)
		}
		if lr != 0.2 {
			t.Errorf("min_lr floor: %g", lr)
		}
	})
	t.Run("bad", func(t *testing.T) {
		if _, err := NewScheduler(config.SchedulerConfig{Name: "plateau", Factor: 2}, 1, 1); err == nil {
			t.Error("factor 2 accepted")
		}
		if _, err := NewScheduler(config.SchedulerConfig{Name: "warm"}, 1, 1); err == nil {
			t.Error("unknown scheduler accepted")
		}
	})
}

// A mistyped data.root must not generate synthetic data there: generation happens for the
// shipped synthetic root, or where data.generate_if_missing is set explicitly.
func TestDataRootTypoDoesNotGenerate(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "lentils_synht")
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: []string{"data.root=" + typo}})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = openData(cfg, nil, nil)
	if err == nil || !strings.Contains(err.Error(), typo) || !strings.Contains(err.Error(), "generate_if_missing") {
		t.Fatalf("typo root: error %v, want one naming %s and generate_if_missing", err, typo)
	}
	if _, err := os.Stat(typo); !os.IsNotExist(err) {
		t.Fatalf("something was created at the mistyped root: %v", err)
	}
	// the shipped default root keeps generating on first use
	def, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn"})
	if err != nil || !def.Data.GenerateIfMissing {
		t.Fatalf("default root: generate_if_missing %v, err %v", def != nil && def.Data.GenerateIfMissing, err)
	}
	// explicitly asked for, from an override or the environment
	for _, o := range []config.LoadOptions{
		{Variant: "drcnn", Overrides: []string{"data.root=" + typo, "data.generate_if_missing=true"}},
		{Variant: "drcnn", Overrides: []string{"data.root=" + typo}, Environ: []string{"SPECTRACLIP_DATA__GENERATE_IF_MISSING=true"}},
	} {
		c, _, err := config.LoadConfig(o)
		if err != nil || !c.Data.GenerateIfMissing {
			t.Errorf("%v: generate_if_missing not kept (err %v)", o, err)
		}
	}
	// and a run's resolved config.yaml keeps the decision
	y, _ := cfg.YAML()
	p := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(p, y, 0o644); err != nil {
		t.Fatal(err)
	}
	back, _, err := config.LoadConfig(config.LoadOptions{File: p})
	if err != nil || back.Data.GenerateIfMissing {
		t.Fatalf("resolved config: generate_if_missing %v, err %v", back != nil && back.Data.GenerateIfMissing, err)
	}
}

// A NaN monitored value counts as "not improved" for early stopping and reduce-on-plateau
// (as PyTorch's comparisons with NaN are false).
func TestNaNMonitorIsNotImproved(t *testing.T) {
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: []string{
		"training.callbacks.early_stopping.enabled=true", "training.callbacks.early_stopping.monitor=val/loss",
		"training.callbacks.early_stopping.patience=2", "training.callbacks.early_stopping.mode=min"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &Run{Evaluator: Evaluator{Cfg: cfg}}
	st := TrainerState{EarlyBest: config.Float(math.NaN())}
	stops := []bool{}
	for _, v := range []float64{1, math.NaN(), math.NaN()} {
		stops = append(stops, r.earlyStop(&st, run.EpochRecord{ValLoss: config.Float(v)}))
	}
	if stops[0] || stops[1] || !stops[2] {
		t.Errorf("early stopping over 1, NaN, NaN with patience 2: %v, want [false false true]", stops)
	}
	s, err := NewScheduler(config.SchedulerConfig{Name: "reduce_on_plateau", Mode: "min", Factor: 0.5, Patience: 1, ThresholdMode: "rel", Eps: 1e-8}, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	lr := 1.0
	for _, v := range []float64{1, math.NaN(), math.NaN()} {
		lr = s.Step(0, lr, v)
	}
	if lr != 0.5 {
		t.Errorf("plateau over 1, NaN, NaN with patience 1: lr %g, want 0.5", lr)
	}
	// NaN as the first value does not become the best either
	s, _ = NewScheduler(config.SchedulerConfig{Name: "reduce_on_plateau", Mode: "min", Factor: 0.5, Patience: 0, ThresholdMode: "rel", Eps: 1e-8}, 1, 10)
	if lr := s.Step(0, 1, math.NaN()); lr != 0.5 {
		t.Errorf("plateau, first value NaN with patience 0: lr %g, want 0.5", lr)
	}
}

// CosineAnnealingLR beyond T_max keeps following the cosine (PyTorch's closed form
// eta_min + (base − eta_min)(1 + cos(π·t/T_max))/2 for every t), checked against the closed
// form and against torch 1.13's scheduler itself.
func TestCosineBeyondTMax(t *testing.T) {
	const base, etaMin, tmax, epochs = 0.1, 1e-3, 4, 13
	s, err := NewScheduler(config.SchedulerConfig{Name: "cosine", MinLR: etaMin, TMax: tmax}, base, 20)
	if err != nil {
		t.Fatal(err)
	}
	var got []float64
	lr := base
	for e := 0; e < epochs; e++ {
		lr = s.Step(e, lr, math.NaN())
		got = append(got, lr)
		want := etaMin + (base-etaMin)*(1+math.Cos(math.Pi*float64(e+1)/tmax))/2
		if math.Abs(lr-want) > 1e-12 {
			t.Errorf("epoch %d: lr %.15g, closed form %.15g", e, lr, want)
		}
	}
	script := `
import json, torch
p = torch.nn.Parameter(torch.zeros(1))
o = torch.optim.SGD([p], lr=0.1)
s = torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=1e-3)
out = []
for _ in range(13):
    o.step(); s.step(); out.append(o.param_groups[0]["lr"])
print(json.dumps(out))
`
	b, err := exec.Command(testpy.Python(), "-c", script).Output()
	if err != nil {
		t.Fatalf("%s with torch (make deps installs it) failed: %v", testpy.Python(), err)
	}
	var torchLR []float64
	if err := json.Unmarshal(b, &torchLR); err != nil {
		t.Fatalf("torch output %q: %v", b, err)
	}
	for e := range got {
		if math.Abs(got[e]-torchLR[e]) > 1e-9 {
			t.Errorf("epoch %d: lr %.12g, torch %.12g", e, got[e], torchLR[e])
		}
	}
}

// TestAllowTF32Setting: training.allow_tf32 is unset (LibTorch's defaults) unless given,
// takes true/false, refuses anything else, and SetTF32 applies it to LibTorch.
func TestAllowTF32Setting(t *testing.T) {
	cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Training.AllowTF32 != nil {
		t.Errorf("default allow_tf32 = %v, want unset", *cfg.Training.AllowTF32)
	}
	m0, c0, err := torch.AllowTF32()
	if err != nil {
		t.Fatal(err)
	}
	defer torch.SetAllowTF32Each(m0, c0)
	for _, want := range []bool{true, false} {
		cfg, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: []string{fmt.Sprintf("training.allow_tf32=%v", want)}})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Training.AllowTF32 == nil || *cfg.Training.AllowTF32 != want {
			t.Fatalf("allow_tf32=%v decoded as %v", want, cfg.Training.AllowTF32)
		}
		pl, err := run.Place(cfg, run.Request{})
		if err != nil {
			t.Fatal(err)
		}
		if err := pl.Apply(); err != nil {
			t.Fatal(err)
		}
		if m, c, _ := torch.AllowTF32(); m != want || c != want {
			t.Errorf("after allow_tf32=%v: matmul %v, conv %v", want, m, c)
		}
	}
	if _, _, err := config.LoadConfig(config.LoadOptions{Variant: "drcnn", Overrides: []string{"training.allow_tf32=maybe"}}); err == nil || !strings.Contains(err.Error(), "allow_tf32") {
		t.Errorf("allow_tf32=maybe: %v, want an error naming the key", err)
	}
}
