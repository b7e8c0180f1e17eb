package sweep

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/scene/scenespec"
)

// PlanName is the expanded sweep inside a sweep directory.
const PlanName = "plan.json"

// planVersion is bumped when the meaning of plan.json changes.
const planVersion = 1

// Point is one run of a sweep.
type Point struct {
	Index int    `json:"index"`
	ID    string `json:"id"`
	Base  Base   `json:"base"`
	Data  string `json:"data,omitempty"`
	// Scene is the labelled scene the point trains on (`train --scene`), or "".
	Scene string `json:"scene,omitempty"`
	// Setting labels the swept values without the seed; points that differ only in their
	// seed share it.
	Setting string  `json:"setting"`
	Params  []KV    `json:"params,omitempty"`
	Seed    *uint64 `json:"seed,omitempty"`
	// Overrides are the `train` overrides (the worker adds training.threads).
	Overrides []string `json:"overrides"`
	// RunDir is the point's run directory, relative to the sweep directory.
	RunDir string `json:"run_dir"`
}

// Group names the setting a point belongs to: base, data source and setting.
func (p *Point) Group() string {
	g := p.Base.Name()
	if p.Data != "" {
		g += " | " + p.Data
	}
	return g + " | " + p.Setting
}

// Plan is an expanded sweep: what plan.json holds.
type Plan struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Metric  string `json:"metric"`
	// Workdir is the directory the points run in (relative paths of the trainruns, such as
	// data.root, are relative to it).
	Workdir string `json:"workdir"`
	// Swept lists the keys that take more than one value (the plots' x axes).
	Swept  []string `json:"swept,omitempty"`
	Points []Point  `json:"points"`
	// synth are the synthetic data sets the points generate if missing (root -> config),
	// created once before points run in parallel.
	synth map[string]dataset.SynthConfig
	order []string
}

// Expand turns a spec into points in a fixed order (base, data source, setting, seed) with
// ids that depend only on what the point runs. Every point's config is resolved now, so an
// unknown key or a bad value is reported before anything runs.
func Expand(s *Spec, workdir string, environ []string) (*Plan, error) {
	return ExpandContext(context.Background(), s, workdir, environ)
}

// ExpandContext is Expand that stops, with an error wrapping ctx's, as soon as ctx ends
// (a SIGTERM or SIGINT in the CLI): resolving each point's config takes milliseconds, and
// --max-points allows sweeps of many thousands of points.
func ExpandContext(ctx context.Context, s *Spec, workdir string, environ []string) (*Plan, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if err := s.CheckPointCount(); err != nil {
		return nil, err
	}
	settings := []Setting{nil}
	for _, ax := range s.Grid {
		var next []Setting
		for _, st := range settings {
			for _, v := range ax.Values {
				n := append(append(Setting{}, st...), KV{Key: ax.Key, Value: v})
				next = append(next, n)
			}
		}
		settings = next
	}
	if len(s.List) > 0 {
		var next []Setting
		for _, l := range s.List {
			for _, g := range settings {
				next = append(next, append(append(Setting{}, l...), g...))
			}
		}
		settings = next
	}
	datas := s.Data
	if len(datas) == 0 {
		datas = []DataSource{{}}
	}
	var seeds []*uint64
	for i := range s.Seeds {
		seeds = append(seeds, &s.Seeds[i])
	}
	if len(seeds) == 0 {
		seeds = []*uint64{nil}
	}
	p := &Plan{Version: planVersion, Name: s.Name, Metric: s.Metric, Workdir: workdir, synth: map[string]dataset.SynthConfig{}}
	ids := map[string]int{}
	for _, b := range s.Bases {
		for _, d := range datas {
			for _, st := range settings {
				for _, seed := range seeds {
					if err := ctx.Err(); err != nil {
						n, _ := s.PointCount()
						return nil, interruptedExpanding(len(p.Points), n, err)
					}
					var ov []string
					ov = append(ov, s.Overrides...)
					if d.Root != "" {
						ov = append(ov, "data.root="+d.Root)
					}
					ov = append(ov, d.Overrides...)
					for _, kv := range st {
						ov = append(ov, kv.Key+"="+kv.Value)
					}
					if seed != nil {
						ov = append(ov, fmt.Sprintf("training.seed=%d", *seed))
					}
					pt := Point{Index: len(p.Points), Base: b, Data: d.Name, Scene: d.Scene, Params: st, Overrides: ov, Setting: settingLabel(st)}
					if seed != nil {
						v := *seed
						pt.Seed = &v
					}
					idv := ov
					if d.Scene != "" {
						idv = append([]string{"--scene=" + d.Scene}, ov...)
					}
					pt.ID = pointID(b, d.Name, idv)
					if j, dup := ids[pt.ID]; dup {
						return nil, fmt.Errorf("points %d and %d are the same run (%s %s): remove the duplicate setting", j, pt.Index, b.Name(), strings.Join(ov, " "))
					}
					ids[pt.ID] = pt.Index
					pt.RunDir = filepath.Join("runs", pt.ID)
					if err := p.resolve(&pt, environ); err != nil {
						return nil, err
					}
					p.Points = append(p.Points, pt)
				}
			}
		}
	}
	p.Swept = sweptKeys(p.Points)
	return p, nil
}

// interruptedExpanding is the error of a sweep stopped before its plan was complete.
func interruptedExpanding(resolved int, points int64, err error) error {
	return fmt.Errorf("sweep interrupted while resolving its points (%d of %d resolved, none ran): %w (rerun the same command to go on)", resolved, points, err)
}

func settingLabel(st Setting) string {
	if len(st) == 0 {
		return "default"
	}
	parts := make([]string, len(st))
	for i, kv := range st {
		parts[i] = kv.Key + "=" + kv.Value
	}
	return strings.Join(parts, " ")
}

func pointID(b Base, data string, ov []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "variant=%s\nfile=%s\ndata=%s\n", b.Variant, b.File, data)
	for _, o := range ov {
		fmt.Fprintf(h, "%s\n", o)
	}
	return b.Name() + "-" + hex.EncodeToString(h.Sum(nil))[:10]
}

func sweptKeys(pts []Point) []string {
	vals := map[string]map[string]bool{}
	var order []string
	for _, p := range pts {
		for _, kv := range p.Params {
			if vals[kv.Key] == nil {
				vals[kv.Key] = map[string]bool{}
				order = append(order, kv.Key)
			}
			vals[kv.Key][kv.Value] = true
		}
	}
	var out []string
	for _, k := range order {
		if len(vals[k]) > 1 {
			out = append(out, k)
		}
	}
	return out
}

// resolve loads the point's config as `train` will, and notes its synthetic data set.
func (p *Plan) resolve(pt *Point, environ []string) error {
	lo := config.LoadOptions{Variant: pt.Base.Variant, File: pt.Base.File, Overrides: pt.Overrides, Environ: environ}
	if lo.File != "" && !filepath.IsAbs(lo.File) && p.Workdir != "" {
		lo.File = filepath.Join(p.Workdir, lo.File)
	}
	var cfg *config.Config
	var err error
	if pt.Scene != "" {
		var sp scenespec.Spec
		if sp, err = scenespec.Parse(map[string]any{"path": pt.Scene}); err == nil {
			cfg, err = scenespec.LoadConfig(scenespec.ConfigOptions{Variant: lo.Variant, File: lo.File, Overrides: lo.Overrides, Environ: environ, Spec: sp})
		}
	} else {
		cfg, _, err = config.LoadConfig(lo)
	}
	if err != nil {
		return fmt.Errorf("point %d (%s, %s): %w", pt.Index, pt.Base.Name(), pt.Setting, err)
	}
	if cfg.Data.GenerateIfMissing {
		sc := dataset.DefaultSynthConfig()
		if err := config.DecodeSynth(cfg.Data.Synth, &sc); err != nil {
			return fmt.Errorf("point %d: %w", pt.Index, err)
		}
		root := cfg.Data.Root
		if !filepath.IsAbs(root) {
			root = filepath.Join(p.Workdir, root)
		}
		if old, ok := p.synth[root]; ok && old != sc {
			return fmt.Errorf("point %d: data.root %s is generated with two different data.synth settings; give each its own data.root", pt.Index, cfg.Data.Root)
		}
		if _, ok := p.synth[root]; !ok {
			p.order = append(p.order, root)
		}
		p.synth[root] = sc
	}
	return nil
}

// PrepareData generates the synthetic data sets the points would generate on first use,
// one after another, so that parallel points never race to create the same directory.
func (p *Plan) PrepareData() error { return p.prepareData(context.Background()) }

// prepareData is PrepareData that stops between data sets once ctx ends.
func (p *Plan) prepareData(ctx context.Context) error {
	for _, root := range p.order {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sweep interrupted while generating its data, before any point ran: %w (rerun the same command to go on)", err)
		}
		if err := dataset.EnsureSynthetic(root, p.synth[root]); err != nil {
			return fmt.Errorf("sweep: data %s: %w", root, err)
		}
	}
	return nil
}

// Save writes plan.json atomically.
func (p *Plan) Save(dir string) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return nodes.WriteFileAtomic(filepath.Join(dir, PlanName), b)
}

// LoadPlan reads a sweep directory's plan.json.
func LoadPlan(dir string) (*Plan, error) {
	path := filepath.Join(dir, PlanName)
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("sweep directory %s has no %s: start the sweep there first (spectraclip sweep -c FILE --out %s)", dir, PlanName, dir)
		}
		return nil, err
	}
	var p Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if p.Version != planVersion {
		return nil, fmt.Errorf("%s: version %d, this program reads version %d", path, p.Version, planVersion)
	}
	for i, pt := range p.Points {
		if pt.Index != i || pt.ID == "" {
			return nil, fmt.Errorf("%s: point %d is malformed (index %d, id %q)", path, i, pt.Index, pt.ID)
		}
	}
	p.synth = map[string]dataset.SynthConfig{}
	return &p, nil
}

// samePoints reports whether two plans have the same points in the same order.
func samePoints(a, b *Plan) bool {
	if len(a.Points) != len(b.Points) {
		return false
	}
	for i := range a.Points {
		if a.Points[i].ID != b.Points[i].ID {
			return false
		}
	}
	return true
}
