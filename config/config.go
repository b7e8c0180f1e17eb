package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/spectraclip/spectraclip/configs"
	"github.com/spectraclip/spectraclip/dataset"
)

// Config is a resolved trainrun, keyed as the reference's trainrun files are.
type Config struct {
	Name          string                    `mapstructure:"name" yaml:"name"`
	Variant       string                    `mapstructure:"variant" yaml:"variant"`
	OutputDir     string                    `mapstructure:"output_dir" yaml:"output_dir"`
	Data          DataConfig                `mapstructure:"data" yaml:"data"`
	Training      TrainingConfig            `mapstructure:"training" yaml:"training"`
	Pipeline      map[string]map[string]any `mapstructure:"pipeline" yaml:"pipeline"`
	Connections   []string                  `mapstructure:"connections" yaml:"connections"`
	LossNodes     []string                  `mapstructure:"loss_nodes" yaml:"loss_nodes"`
	MetricNodes   []string                  `mapstructure:"metric_nodes" yaml:"metric_nodes"`
	UnfreezeNodes []string                  `mapstructure:"unfreeze_nodes" yaml:"unfreeze_nodes"`
	FreezeNodes   []string                  `mapstructure:"freeze_nodes" yaml:"freeze_nodes"`
	Evaluation    EvalConfig                `mapstructure:"evaluation" yaml:"evaluation"`
	Plugins       map[string]map[string]any `mapstructure:"plugins" yaml:"plugins,omitempty"`
}

// DataConfig selects and batches the data.
//
// Bounds: root must not be empty unless scene is given; batch_size 1..MaxBatchSize (1024);
// prefetch -1..MaxPrefetch (64; -1 = synchronous, 0 = 2).
type DataConfig struct {
	Root              string         `mapstructure:"root" yaml:"root"`
	GenerateIfMissing bool           `mapstructure:"generate_if_missing" yaml:"generate_if_missing"`
	Synth             map[string]any `mapstructure:"synth" yaml:"synth"`
	BatchSize         int            `mapstructure:"batch_size" yaml:"batch_size"`
	InMemory          bool           `mapstructure:"in_memory" yaml:"in_memory"`
	Prefetch          int            `mapstructure:"prefetch" yaml:"prefetch"`
	TrainIDs          []int          `mapstructure:"train_ids" yaml:"train_ids"`
	ValIDs            []int          `mapstructure:"val_ids" yaml:"val_ids"`
	TestIDs           []int          `mapstructure:"test_ids" yaml:"test_ids"`
	// Scene makes one labelled capture the data source (package scene reads it: path,
	// cube_var, gt_var, mask_path, split, ...); nil = data.root.
	Scene map[string]any `mapstructure:"scene" yaml:"scene,omitempty"`
}

// TrainingConfig holds the trainer, optimizer, scheduler and callbacks.
type TrainingConfig struct {
	Seed   uint64 `mapstructure:"seed" yaml:"seed"`
	Device string `mapstructure:"device" yaml:"device"`
	// Threads are LibTorch's threads, 0..MaxThreads() (0 = one per CPU core).
	Threads int `mapstructure:"threads" yaml:"threads"`
	// AllowTF32 lets CUDA float32 matmuls and convolutions use TF32 (Ampere and newer):
	// nil keeps LibTorch's defaults (matmuls off, convolutions on).
	AllowTF32 *bool           `mapstructure:"allow_tf32" yaml:"allow_tf32"`
	Trainer   TrainerConfig   `mapstructure:"trainer" yaml:"trainer"`
	Optimizer OptimizerConfig `mapstructure:"optimizer" yaml:"optimizer"`
	Scheduler SchedulerConfig `mapstructure:"scheduler" yaml:"scheduler"`
	Callbacks CallbacksConfig `mapstructure:"callbacks" yaml:"callbacks"`
}

// TrainerConfig is the epoch loop.
type TrainerConfig struct {
	MaxEpochs           int     `mapstructure:"max_epochs" yaml:"max_epochs"`
	GradientClipVal     float64 `mapstructure:"gradient_clip_val" yaml:"gradient_clip_val"`
	CheckValEveryNEpoch int     `mapstructure:"check_val_every_n_epoch" yaml:"check_val_every_n_epoch"`
	EnableProgressBar   bool    `mapstructure:"enable_progress_bar" yaml:"enable_progress_bar"`
	Deterministic       bool    `mapstructure:"deterministic" yaml:"deterministic"`
}

// OptimizerConfig names an optimizer and its hyper-parameters.
type OptimizerConfig struct {
	Name        string    `mapstructure:"name" yaml:"name"`
	LR          float64   `mapstructure:"lr" yaml:"lr"`
	WeightDecay float64   `mapstructure:"weight_decay" yaml:"weight_decay"`
	Betas       []float64 `mapstructure:"betas" yaml:"betas"`
	Momentum    float64   `mapstructure:"momentum" yaml:"momentum"`
}

// SchedulerConfig is a learning-rate schedule (name "" for none).
type SchedulerConfig struct {
	Name          string  `mapstructure:"name" yaml:"name"`
	Monitor       string  `mapstructure:"monitor" yaml:"monitor"`
	Mode          string  `mapstructure:"mode" yaml:"mode"`
	Factor        float64 `mapstructure:"factor" yaml:"factor"`
	Patience      int     `mapstructure:"patience" yaml:"patience"`
	Threshold     float64 `mapstructure:"threshold" yaml:"threshold"`
	ThresholdMode string  `mapstructure:"threshold_mode" yaml:"threshold_mode"`
	Cooldown      int     `mapstructure:"cooldown" yaml:"cooldown"`
	MinLR         float64 `mapstructure:"min_lr" yaml:"min_lr"`
	Eps           float64 `mapstructure:"eps" yaml:"eps"`
	TMax          int     `mapstructure:"t_max" yaml:"t_max"`
	StepSize      int     `mapstructure:"step_size" yaml:"step_size"`
	Gamma         float64 `mapstructure:"gamma" yaml:"gamma"`
}

// CallbacksConfig holds checkpointing and early stopping.
type CallbacksConfig struct {
	Checkpoint    CheckpointConfig    `mapstructure:"checkpoint" yaml:"checkpoint"`
	EarlyStopping EarlyStoppingConfig `mapstructure:"early_stopping" yaml:"early_stopping"`
}

// CheckpointConfig keeps the best top-k checkpoints by a monitored metric, and the last.
type CheckpointConfig struct {
	Enabled bool   `mapstructure:"enabled" yaml:"enabled"`
	Monitor string `mapstructure:"monitor" yaml:"monitor"`
	Mode    string `mapstructure:"mode" yaml:"mode"`
	// SaveTopK keeps the best k checkpoints: -1 = all of them, 0 = none; below -1 is refused.
	SaveTopK int  `mapstructure:"save_top_k" yaml:"save_top_k"`
	SaveLast bool `mapstructure:"save_last" yaml:"save_last"`
}

// EarlyStoppingConfig stops training when a metric stops improving.
type EarlyStoppingConfig struct {
	Enabled  bool    `mapstructure:"enabled" yaml:"enabled"`
	Monitor  string  `mapstructure:"monitor" yaml:"monitor"`
	Mode     string  `mapstructure:"mode" yaml:"mode"`
	Patience int     `mapstructure:"patience" yaml:"patience"`
	MinDelta float64 `mapstructure:"min_delta" yaml:"min_delta"`
}

// EvalConfig names the ports the trainer evaluates ("node.port").
type EvalConfig struct {
	Scores    string `mapstructure:"scores" yaml:"scores"`
	Decisions string `mapstructure:"decisions" yaml:"decisions"`
	Targets   string `mapstructure:"targets" yaml:"targets"`
	Reduced   string `mapstructure:"reduced" yaml:"reduced"`
}

// Variants maps the tutorial variant names to their shipped trainrun files.
var Variants = map[string]string{
	"pca":      "trainrun/pca_adaclip_baseline.yaml",
	"drcnn":    "trainrun/drcnn_adaclip.yaml",
	"concrete": "trainrun/concrete_adaclip.yaml",
}

// VariantNames lists the variants in a stable order.
var VariantNames = []string{"pca", "drcnn", "concrete"}

// EnvPrefix prefixes environment overrides: SPECTRACLIP_TRAINING__OPTIMIZER__LR=3e-4
// overrides training.optimizer.lr.
const EnvPrefix = "SPECTRACLIP_"

// maxConfigBytes bounds a config file read into memory.
const maxConfigBytes = 16 << 20

// LoadOptions say where a config comes from.
type LoadOptions struct {
	Variant   string   // pca, drcnn or concrete (a shipped trainrun)
	File      string   // or a YAML file of the user's
	Overrides []string // Hydra-style key=value
	Environ   []string // environment (os.Environ() in the CLI); nil: none
}

// LoadConfig composes a trainrun: its `defaults` (shipped data/ and training/ files, or
// files relative to the trainrun), the trainrun itself, environment overrides, then
// command-line overrides. Unknown keys and wrong types are errors listing what is allowed.
func LoadConfig(o LoadOptions) (*Config, *viper.Viper, error) {
	var src []byte
	var name string
	var dir string
	switch {
	case o.File != "":
		b, err := dataset.ReadRegularFile(o.File, "config", maxConfigBytes)
		if err != nil {
			return nil, nil, err
		}
		src, name, dir = b, o.File, filepath.Dir(o.File)
	case o.Variant != "":
		p, ok := Variants[o.Variant]
		if !ok {
			return nil, nil, fmt.Errorf("config: unknown variant %q (allowed: %s)", o.Variant, strings.Join(VariantNames, ", "))
		}
		b, err := fs.ReadFile(configs.FS, p)
		if err != nil {
			return nil, nil, err
		}
		src, name = b, "configs/"+p
	default:
		return nil, nil, fmt.Errorf("config: give a variant (--variant pca|drcnn|concrete) or a file (-c FILE)")
	}
	var top map[string]any
	if err := yaml.Unmarshal(src, &top); err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", name, err)
	}
	v := viper.New()
	if defs, ok := top["defaults"]; ok {
		list, ok := defs.([]any)
		if !ok {
			return nil, nil, fmt.Errorf("config %s: defaults must be a list of config names", name)
		}
		for _, d := range list {
			ds, ok := d.(string)
			if !ok {
				return nil, nil, fmt.Errorf("config %s: defaults entry %v is not a name", name, d)
			}
			m, err := readDefault(ds, dir)
			if err != nil {
				return nil, nil, fmt.Errorf("config %s: defaults %q: %w", name, ds, err)
			}
			key := strings.SplitN(ds, "/", 2)[0]
			if err := v.MergeConfigMap(map[string]any{key: m}); err != nil {
				return nil, nil, err
			}
		}
		delete(top, "defaults")
	}
	// The synthetic set is generated only at the root the shipped defaults name, or where
	// data.generate_if_missing is set by the trainrun, the environment or an override: a
	// mistyped data.root must fail, not train on freshly generated data.
	defaultRoot := v.GetString("data.root")
	explicitGen := false
	if d, ok := top["data"].(map[string]any); ok {
		_, explicitGen = d["generate_if_missing"]
	}
	if err := v.MergeConfigMap(top); err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", name, err)
	}
	if err := applyEnv(v, o.Environ); err != nil {
		return nil, nil, err
	}
	if err := ApplyOverrides(v, o.Overrides); err != nil {
		return nil, nil, err
	}
	for _, e := range configEnv(o.Environ) {
		explicitGen = explicitGen || e.Key == "data.generate_if_missing"
	}
	for _, ov := range o.Overrides {
		explicitGen = explicitGen || overrideKey(ov) == "data.generate_if_missing"
	}
	if !explicitGen && (defaultRoot == "" || filepath.Clean(v.GetString("data.root")) != filepath.Clean(defaultRoot)) {
		v.Set("data.generate_if_missing", false)
	}
	cfg, err := Decode(v)
	if err != nil {
		if ev := envBlame(err, o.Environ, o.Overrides); ev != "" {
			return nil, nil, fmt.Errorf("config %s: environment %s: %w", name, ev, err)
		}
		return nil, nil, fmt.Errorf("config %s: %w", name, err)
	}
	return cfg, v, nil
}

func readDefault(name, dir string) (map[string]any, error) {
	var b []byte
	var err error
	if dir != "" {
		if p := filepath.Join(dir, name+".yaml"); statOK(p) {
			b, err = dataset.ReadRegularFile(p, "config", maxConfigBytes)
		}
	}
	if b == nil && err == nil {
		b, err = fs.ReadFile(configs.FS, name+".yaml")
	}
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

func statOK(p string) bool { _, err := os.Stat(p); return err == nil }

// ApplyOverrides applies Hydra-style `key.sub=value` overrides: the value is read as YAML
// (numbers, lists, booleans), and the key must already exist (`+key=value` adds one).
func ApplyOverrides(v *viper.Viper, overrides []string) error {
	for _, o := range overrides {
		add := strings.HasPrefix(o, "+")
		o = strings.TrimPrefix(o, "+")
		k, val, ok := strings.Cut(o, "=")
		if !ok || k == "" {
			return fmt.Errorf("override %q: want key=value", o)
		}
		var x any
		if err := yaml.Unmarshal([]byte(val), &x); err != nil {
			return fmt.Errorf("override %q: bad value: %w", o, err)
		}
		if _, isString := v.Get(k).(string); isString && strings.TrimSpace(val) == "" {
			// key= on a string key is the empty string: viper ignores a nil value and would
			// keep the default silently (data.root= trained on the default root).
			x = ""
		}
		// a key whose default is null is known although viper does not count it as set
		if !add && !v.IsSet(k) && !slices.Contains(childKeys(v, parentKey(k)), k[strings.LastIndex(k, ".")+1:]) {
			return fmt.Errorf("override %q: unknown key %q (use +%s=... to add a key; known keys under %q: %s)", o, k, k, parentKey(k), strings.Join(childKeys(v, parentKey(k)), ", "))
		}
		v.Set(k, x)
	}
	return nil
}

// overrideKey is the key an override (`key=value`, `+key=value`) sets.
func overrideKey(ov string) string {
	k, _, _ := strings.Cut(strings.TrimPrefix(ov, "+"), "=")
	return strings.TrimSpace(k)
}

func parentKey(k string) string {
	if i := strings.LastIndex(k, "."); i >= 0 {
		return k[:i]
	}
	return ""
}

func childKeys(v *viper.Viper, parent string) []string {
	set := map[string]bool{}
	prefix := parent
	if prefix != "" {
		prefix += "."
	}
	for _, k := range v.AllKeys() {
		if strings.HasPrefix(k, prefix) {
			rest := strings.TrimPrefix(k, prefix)
			set[strings.SplitN(rest, ".", 2)[0]] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// NonConfigEnv lists the SPECTRACLIP_ environment variables that are not config keys; any
// other SPECTRACLIP_ variable must name an existing key (SPECTRACLIP_TEST_* are test hooks).
var NonConfigEnv = []string{"SPECTRACLIP_PLUGIN_CACHE", dataset.EnvMaxCubeBytes}

// envVar is a SPECTRACLIP_ variable that names a config key.
type envVar struct {
	Name  string // SPECTRACLIP_TRAINING__OPTIMIZER__LR
	Key   string // training.optimizer.lr
	Value string
}

// configEnv returns the variables of environ that name config keys, in order: those with
// EnvPrefix, less NonConfigEnv and the SPECTRACLIP_TEST_* hooks.
func configEnv(environ []string) []envVar {
	var out []envVar
	for _, kv := range environ {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) || slices.Contains(NonConfigEnv, k) || strings.HasPrefix(k, EnvPrefix+"TEST_") {
			continue
		}
		out = append(out, envVar{Name: k, Key: strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, EnvPrefix), "__", ".")), Value: val})
	}
	return out
}

// envBlame names the SPECTRACLIP_ variable that set the key a decoding or validation error
// is about ("" when no variable did, or a command-line override set that key after it).
func envBlame(err error, environ, overrides []string) string {
	msg := err.Error()
	for _, e := range configEnv(environ) {
		key := e.Key
		if !strings.Contains(msg, key+":") && !strings.Contains(msg, key+" ") && !strings.HasSuffix(msg, key) {
			continue
		}
		if !slices.ContainsFunc(overrides, func(ov string) bool { return overrideKey(ov) == key }) {
			return e.Name
		}
	}
	return ""
}

func applyEnv(v *viper.Viper, environ []string) error {
	for _, e := range configEnv(environ) {
		k, key := e.Name, e.Key
		if !v.IsSet(key) {
			where := "top-level keys"
			if pk := parentKey(key); pk != "" {
				where = fmt.Sprintf("keys under %q", pk)
			}
			return fmt.Errorf("environment %s: %q is not a config key (%s: %s); config variables are written %sSECTION__KEY, e.g. %sTRAINING__OPTIMIZER__LR; the other variables are %s",
				k, key, where, strings.Join(childKeys(v, parentKey(key)), ", "), EnvPrefix, EnvPrefix, strings.Join(NonConfigEnv, ", "))
		}
		if err := ApplyOverrides(v, []string{key + "=" + e.Value}); err != nil {
			return fmt.Errorf("environment %s: %w", k, err)
		}
	}
	return nil
}

// Decode turns the merged settings into a Config, rejecting unknown keys and wrong types.
func Decode(v *viper.Viper) (*Config, error) {
	var cfg Config
	dc := func(c *mapstructure.DecoderConfig) {
		c.ErrorUnused = true
		c.WeaklyTypedInput = false
		c.ZeroFields = true
		c.DecodeHook = mapstructure.ComposeDecodeHookFunc(wholeNumbers, c.DecodeHook)
	}
	if err := v.UnmarshalExact(&cfg, dc); err != nil {
		return nil, explainDecode(err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// wholeNumbers refuses a fractional number for an integer setting (mapstructure would
// truncate max_epochs=2.5 to 2 without a word).
func wholeNumbers(from, to reflect.Type, data any) (any, error) {
	switch to.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
	default:
		return data, nil
	}
	if from.Kind() != reflect.Float32 && from.Kind() != reflect.Float64 {
		return data, nil
	}
	f := reflect.ValueOf(data).Float()
	if f != math.Trunc(f) || math.IsInf(f, 0) || math.Abs(f) > 1<<53 {
		return nil, fmt.Errorf("want a whole number, got %v", f)
	}
	return data, nil
}

var (
	invalidKeysRe = regexp.MustCompile(`^'([^']*)' has invalid keys: (.*)$`)
	decodingRe    = regexp.MustCompile(`^(?:error decoding )?'([^']*)'[: ]\s*(.*)$`)
)

// explainDecode rewrites mapstructure's errors reason first ("key: what is wrong"), and an
// unknown key with the keys allowed at its own level.
func explainDecode(err error) error {
	msg := strings.TrimSpace(err.Error())
	msg = strings.TrimSpace(strings.TrimPrefix(msg, "decoding failed due to the following error(s):"))
	var parts []string
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "* "))
		if line == "" {
			continue
		}
		if m := invalidKeysRe.FindStringSubmatch(line); m != nil {
			section, where := m[1], m[1]
			if where == "" {
				where = "top level"
			}
			parts = append(parts, fmt.Sprintf("unknown key(s) %s in %s (allowed there: %s)", m[2], where, strings.Join(sectionKeys(section), ", ")))
			continue
		}
		if m := decodingRe.FindStringSubmatch(line); m != nil {
			parts = append(parts, m[1]+": "+m[2])
			continue
		}
		parts = append(parts, line)
	}
	if len(parts) == 0 {
		return err
	}
	return errors.New(strings.Join(parts, "; "))
}

// sectionKeys lists the keys of a section of Config ("" = top level, "training.trainer", …)
// from the struct's mapstructure tags.
func sectionKeys(section string) []string {
	t := reflect.TypeOf(Config{})
	if section != "" {
		for _, part := range strings.Split(section, ".") {
			found := false
			for i := 0; i < t.NumField(); i++ {
				if strings.Split(t.Field(i).Tag.Get("mapstructure"), ",")[0] == part {
					t, found = t.Field(i).Type, true
					break
				}
			}
			if !found || t.Kind() != reflect.Struct {
				return nil
			}
		}
	}
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if k := strings.Split(t.Field(i).Tag.Get("mapstructure"), ",")[0]; k != "" && k != "-" {
			out = append(out, k)
		}
	}
	return out
}

// Validate checks values that the types alone do not.
func (c *Config) Validate() error {
	if c.Name == "" {
		return fmt.Errorf("name: must not be empty")
	}
	if c.Variant != "" && !slices.Contains(VariantNames, c.Variant) {
		return fmt.Errorf("variant: %q is not a known variant (allowed: %s)", c.Variant, strings.Join(VariantNames, ", "))
	}
	if err := finiteNumbers(reflect.ValueOf(*c), ""); err != nil {
		return err
	}
	if c.Data.BatchSize < 1 && c.Data.Scene == nil { // a whole scene is one frame per batch
		return fmt.Errorf("data.batch_size: %d must be >= 1", c.Data.BatchSize)
	}
	if c.Data.BatchSize > MaxBatchSize {
		return fmt.Errorf("data.batch_size: %d is over the maximum of %d", c.Data.BatchSize, MaxBatchSize)
	}
	if c.Data.Prefetch < -1 || c.Data.Prefetch > MaxPrefetch {
		return fmt.Errorf("data.prefetch: %d is out of range -1..%d (-1 = load synchronously, 0 = the default, 2)", c.Data.Prefetch, MaxPrefetch)
	}
	if c.Data.Scene == nil && strings.TrimSpace(c.Data.Root) == "" {
		return fmt.Errorf("data.root: empty; name the dataset directory (a dataset.yaml or a synthetic set to generate there), or give a scene (train --scene FILE)")
	}
	if k := c.Training.Callbacks.Checkpoint.SaveTopK; k < -1 {
		return fmt.Errorf("training.callbacks.checkpoint.save_top_k: %d is out of range (-1 = keep every checkpoint, 0 = none, k > 0 = the best k)", k)
	}
	if c.Training.Trainer.MaxEpochs < 0 {
		return fmt.Errorf("training.trainer.max_epochs: %d must be >= 0", c.Training.Trainer.MaxEpochs)
	}
	if maxT := MaxThreads(); c.Training.Threads < 0 || c.Training.Threads > maxT {
		return fmt.Errorf("training.threads: %d is out of range 0..%d (0 = one per CPU core; the limit is 4 per CPU core, at least 64)", c.Training.Threads, maxT)
	}
	if g := c.Training.Trainer.GradientClipVal; !(g >= 0) || math.IsInf(g, 0) {
		return fmt.Errorf("training.trainer.gradient_clip_val: %g must be a finite number >= 0 (0 = no clipping)", g)
	}
	switch c.Training.Optimizer.Name {
	case "adam", "adamw", "sgd":
	default:
		return fmt.Errorf("training.optimizer.name: %q (allowed: adam, adamw, sgd)", c.Training.Optimizer.Name)
	}
	if c.Training.Optimizer.LR <= 0 || c.Training.Optimizer.LR > 1 {
		return fmt.Errorf("training.optimizer.lr: %g must be in (0, 1]", c.Training.Optimizer.LR)
	}
	if b := c.Training.Optimizer.Betas; len(b) != 0 && len(b) != 2 {
		return fmt.Errorf("training.optimizer.betas: want two numbers, got %v", b)
	}
	switch c.Training.Scheduler.Name {
	case "", "none", "reduce_on_plateau", "plateau", "cosine", "step", "exponential":
	default:
		return fmt.Errorf("training.scheduler.name: %q (allowed: none, reduce_on_plateau, cosine, step, exponential)", c.Training.Scheduler.Name)
	}
	for _, m := range []struct{ key, v string }{
		{"training.scheduler.mode", c.Training.Scheduler.Mode},
		{"training.callbacks.checkpoint.mode", c.Training.Callbacks.Checkpoint.Mode},
		{"training.callbacks.early_stopping.mode", c.Training.Callbacks.EarlyStopping.Mode},
	} {
		if m.v != "min" && m.v != "max" && m.v != "" {
			return fmt.Errorf("%s: %q (allowed: min, max)", m.key, m.v)
		}
	}
	if len(c.Pipeline) == 0 {
		return fmt.Errorf("pipeline: no nodes")
	}
	for name, n := range c.Pipeline {
		if t, _ := n["type"].(string); t == "" {
			return fmt.Errorf("pipeline.%s.type: missing (the registered node type)", name)
		}
	}
	for _, l := range append(append(append([]string{}, c.LossNodes...), c.MetricNodes...), append(c.UnfreezeNodes, c.FreezeNodes...)...) {
		if _, ok := c.Pipeline[l]; !ok {
			return fmt.Errorf("node %q is listed in loss_nodes/metric_nodes/unfreeze_nodes/freeze_nodes but not in pipeline (nodes: %s)", l, strings.Join(slices.Sorted(maps.Keys(c.Pipeline)), ", "))
		}
	}
	tc := c.Training
	for _, m := range []struct {
		key, name string
		used      bool
	}{
		{"training.callbacks.checkpoint.monitor", tc.Callbacks.Checkpoint.Monitor, tc.Callbacks.Checkpoint.Enabled && tc.Callbacks.Checkpoint.SaveTopK != 0},
		{"training.callbacks.early_stopping.monitor", tc.Callbacks.EarlyStopping.Monitor, tc.Callbacks.EarlyStopping.Enabled},
		{"training.scheduler.monitor", tc.Scheduler.Monitor, tc.Scheduler.Name == "reduce_on_plateau" || tc.Scheduler.Name == "plateau"},
	} {
		if m.used && !slices.Contains(c.MonitorNames(), m.name) {
			return fmt.Errorf("%s: %q is not a logged value (allowed: %s)", m.key, m.name, strings.Join(c.MonitorNames(), ", "))
		}
	}
	return nil
}

// finiteNumbers refuses NaN and ±Inf in every floating-point setting of a config struct,
// naming its key.
func finiteNumbers(v reflect.Value, prefix string) error {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag := strings.Split(t.Field(i).Tag.Get("mapstructure"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		key := strings.TrimPrefix(prefix+"."+tag, ".")
		f := v.Field(i)
		switch f.Kind() {
		case reflect.Struct:
			if err := finiteNumbers(f, key); err != nil {
				return err
			}
		case reflect.Float32, reflect.Float64:
			if x := f.Float(); math.IsNaN(x) || math.IsInf(x, 0) {
				return fmt.Errorf("%s: %v is not a finite number", key, x)
			}
		case reflect.Slice:
			if k := f.Type().Elem().Kind(); k == reflect.Float32 || k == reflect.Float64 {
				for j := 0; j < f.Len(); j++ {
					if x := f.Index(j).Float(); math.IsNaN(x) || math.IsInf(x, 0) {
						return fmt.Errorf("%s[%d]: %v is not a finite number", key, j, x)
					}
				}
			}
		}
	}
	return nil
}

// metricKeys are the values a metrics node logs each validation epoch (as node/key).
var metricKeys = []string{"precision", "recall", "f1_score", "iou", "average_precision", "auroc"}

// MonitorNames lists the names a checkpoint, early stopping or reduce-on-plateau may
// monitor: the losses and the metrics of the first node in metric_nodes, as logged.
func (c *Config) MonitorNames() []string {
	out := []string{"val/loss", "val_loss", "train/loss", "train_loss"}
	if len(c.MetricNodes) > 0 { // the evaluation's metrics are the first metrics node's
		for _, k := range metricKeys {
			out = append(out, c.MetricNodes[0]+"/"+k)
		}
	}
	return out
}

// MaxBatchSize is the largest data.batch_size (and infer --batch, bench --batch): frames
// decoded and run together.
const MaxBatchSize = 1024

// MaxPrefetch is the largest data.prefetch: batches prepared ahead, each held in memory.
const MaxPrefetch = 64

// MaxThreads is the largest training.threads accepted: 4 per CPU core, at least 64. The
// --threads flags of infer, bench and sweep and sweep's --workers take the same bound.
func MaxThreads() int { return max(64, 4*runtime.NumCPU()) }

// CheckThreads refuses a LibTorch thread count outside 0..MaxThreads(); what names the flag
// or key ("--threads").
func CheckThreads(what string, n int) error {
	if maxT := MaxThreads(); n < 0 || n > maxT {
		return fmt.Errorf("%s %d: out of range 0..%d (0 = one per CPU core; the limit is 4 per CPU core, at least 64)", what, n, maxT)
	}
	return nil
}

// YAML renders the resolved config (saved with every run).
func (c *Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ParseConnection splits "a.port -> b.port".
func ParseConnection(s string) (string, string, error) {
	a, b, ok := strings.Cut(s, "->")
	if !ok {
		return "", "", fmt.Errorf("connection %q: want \"node.port -> node.port\"", s)
	}
	return strings.TrimSpace(a), strings.TrimSpace(b), nil
}
