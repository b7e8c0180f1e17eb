// Package sweep runs batch experiments: a sweep (variants or trainrun files × data sources ×
// settings × seeds) is expanded deterministically into points with stable ids, and every
// point is an ordinary run directory written by a `spectraclip train` process with the
// point's override list. Points run on N workers (one per GPU, or the CPU cores shared out),
// the sweep's state is kept atomically per point so a killed sweep loses only the runs in
// flight, and the results (sweep.json, sweep.csv, report.md, plots) are built from the run
// directories. The same points run as a Slurm job array (EmitSlurm, Options.Point) and are
// collected afterwards (Options.Collect).
package sweep

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
)

// Spec is a sweep before expansion: what a sweep file holds, or what the quick command
// line builds.
type Spec struct {
	Name string
	// Bases are the trainruns every setting is applied to: shipped variants or files.
	Bases []Base
	// Seeds are the values of training.seed; empty means one point per setting with the
	// trainrun's own seed.
	Seeds []uint64
	// Overrides apply to every point (key=value, as `train` takes them).
	Overrides []string
	// Grid axes are multiplied out (in order); List entries are settings of their own.
	// With both, every list entry is combined with every grid combination.
	Grid []Axis
	List []Setting
	// Data are the data sources; empty means the trainrun's own data.
	Data []DataSource
	// Metric is the test metric that picks the best setting (default average_precision).
	Metric string
	// MaxPoints is the most points the sweep may expand to (0: DefaultMaxPoints); the CLI's
	// --max-points sets it.
	MaxPoints int64
}

// DefaultMaxPoints is the most points (trainings) a sweep expands to unless MaxPoints
// (--max-points) raises it: every point is a training run and its directory, and each is
// resolved (its config loaded and checked) before the first one runs.
const DefaultMaxPoints = 10000

// MaxSeedCount bounds a seed count ("seeds: N", --seeds N).
const MaxSeedCount = 1000000

// maxSweepFileBytes bounds a sweep file read into memory.
const maxSweepFileBytes = 16 << 20

// PointCount is the number of points the spec expands to (trainruns × data sources ×
// settings × seeds), saturating at math.MaxInt64, and the factors as text.
func (s *Spec) PointCount() (int64, string) {
	settings := int64(1)
	mul := func(a, b int64) int64 {
		if a != 0 && b > math.MaxInt64/a {
			return math.MaxInt64
		}
		return a * b
	}
	for _, ax := range s.Grid {
		settings = mul(settings, int64(len(ax.Values)))
	}
	if len(s.List) > 0 {
		settings = mul(settings, int64(len(s.List)))
	}
	data, seeds := int64(max(1, len(s.Data))), int64(max(1, len(s.Seeds)))
	n := mul(mul(mul(int64(len(s.Bases)), data), settings), seeds)
	return n, fmt.Sprintf("%d trainruns × %d data sources × %d settings × %d seeds", len(s.Bases), data, settings, seeds)
}

// CheckPointCount refuses a spec of more points than its maximum.
func (s *Spec) CheckPointCount() error {
	limit := s.MaxPoints
	if limit <= 0 {
		limit = DefaultMaxPoints
	}
	n, how := s.PointCount()
	if n > limit {
		count := fmt.Sprint(n)
		if n == math.MaxInt64 {
			count = "more than 9223372036854775807"
		}
		return fmt.Errorf("sweep %q: %s points (%s), more than the maximum of %d; shrink the grid or raise the maximum with --max-points", s.Name, count, how, limit)
	}
	return nil
}

// Base is one trainrun: a shipped variant (Variant) or a trainrun file (File).
type Base struct {
	Variant string `json:"variant,omitempty"`
	File    string `json:"file,omitempty"`
}

// Name is the base's short name (the variant, or the file name without extension).
func (b Base) Name() string {
	if b.Variant != "" {
		return b.Variant
	}
	return strings.TrimSuffix(filepath.Base(b.File), filepath.Ext(b.File))
}

// Axis is one swept key and its values (as override value text).
type Axis struct {
	Key    string
	Values []string
}

// Setting is one combination of key=value overrides, in order.
type Setting []KV

// KV is one override.
type KV struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// DataSource is a named data set: a data.root and/or further overrides.
type DataSource struct {
	Name string `json:"name"`
	Root string `json:"root,omitempty"`
	// Scene is a labelled capture (ENVI, .mat, .npy, .npz) that the points train on with
	// `train --scene` (whole-scene pixel split and the scene defaults); not with Root.
	Scene     string   `json:"scene,omitempty"`
	Overrides []string `json:"overrides,omitempty"`
}

// DefaultMetric picks the best setting when a sweep names none.
const DefaultMetric = "average_precision"

// LoadSpec reads a sweep file:
//
//	name: lr-sweep
//	variants: [drcnn, concrete]     # shipped trainruns, and/or
//	trainruns: [my_trainrun.yaml]   # trainrun files (relative to the sweep file)
//	seeds: 3                        # 0,1,2; or a list [1, 7, 9]
//	overrides: [training.trainer.max_epochs=10]
//	grid:                           # multiplied out, in this order
//	  training.optimizer.lr: [1e-3, 3e-3]
//	list:                           # settings of their own (× the grid when both are given)
//	  - {training.optimizer.name: sgd, training.optimizer.momentum: 0.9}
//	data:                           # data sources (default: the trainrun's own)
//	  - {name: small, root: data/small, overrides: [data.batch_size=1]}
//	metric: average_precision       # test metric that picks the best setting
//
// The file must be a regular file of at most 16 MiB.
func LoadSpec(path string) (*Spec, error) {
	b, err := dataset.ReadRegularFile(path, "sweep file", maxSweepFileBytes)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("sweep file %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("sweep file %s: empty", path)
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("sweep file %s: want a mapping at the top", path)
	}
	dir := filepath.Dir(path)
	s := &Spec{Name: strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))}
	bad := func(key string, n *yaml.Node, format string, a ...any) error {
		return fmt.Errorf("sweep file %s:%d: %s: %s", path, n.Line, key, fmt.Sprintf(format, a...))
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		key, val := top.Content[i].Value, top.Content[i+1]
		switch key {
		case "name":
			if val.Kind != yaml.ScalarNode || val.Value == "" {
				return nil, bad(key, val, "want a non-empty name")
			}
			s.Name = val.Value
		case "variants":
			names, err := scalarList(val)
			if err != nil {
				return nil, bad(key, val, "%v", err)
			}
			for _, n := range names {
				s.Bases = append(s.Bases, Base{Variant: n})
			}
		case "trainruns":
			names, err := scalarList(val)
			if err != nil {
				return nil, bad(key, val, "%v", err)
			}
			for _, n := range names {
				if !filepath.IsAbs(n) {
					n = filepath.Join(dir, n)
				}
				s.Bases = append(s.Bases, Base{File: n})
			}
		case "seeds":
			seeds, err := parseSeedsNode(val)
			if err != nil {
				return nil, bad(key, val, "%v", err)
			}
			s.Seeds = seeds
		case "overrides":
			ovs, err := scalarList(val)
			if err != nil {
				return nil, bad(key, val, "%v", err)
			}
			s.Overrides = append(s.Overrides, ovs...)
		case "grid":
			if val.Kind != yaml.MappingNode {
				return nil, bad(key, val, "want a mapping of key: [values]")
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				k, vs := val.Content[j].Value, val.Content[j+1]
				var ax Axis
				ax.Key = k
				if vs.Kind == yaml.SequenceNode {
					for _, v := range vs.Content {
						t, err := valueText(v)
						if err != nil {
							return nil, bad("grid."+k, v, "%v", err)
						}
						ax.Values = append(ax.Values, t)
					}
				} else {
					t, err := valueText(vs)
					if err != nil {
						return nil, bad("grid."+k, vs, "%v", err)
					}
					ax.Values = []string{t}
				}
				if len(ax.Values) == 0 {
					return nil, bad("grid."+k, vs, "no values")
				}
				s.Grid = append(s.Grid, ax)
			}
		case "list":
			if val.Kind != yaml.SequenceNode {
				return nil, bad(key, val, "want a list of {key: value} settings")
			}
			for _, e := range val.Content {
				if e.Kind != yaml.MappingNode {
					return nil, bad(key, e, "each entry must be a mapping of key: value")
				}
				var st Setting
				for j := 0; j+1 < len(e.Content); j += 2 {
					t, err := valueText(e.Content[j+1])
					if err != nil {
						return nil, bad("list."+e.Content[j].Value, e.Content[j+1], "%v", err)
					}
					st = append(st, KV{Key: e.Content[j].Value, Value: t})
				}
				s.List = append(s.List, st)
			}
		case "data":
			if val.Kind != yaml.SequenceNode {
				return nil, bad(key, val, "want a list of {name, root | scene, overrides}")
			}
			for _, e := range val.Content {
				var ds DataSource
				if err := e.Decode(&ds); err != nil {
					return nil, bad(key, e, "%v", err)
				}
				if err := checkKeys(e, "name", "root", "scene", "overrides"); err != nil {
					return nil, bad(key, e, "%v", err)
				}
				if ds.Root != "" && ds.Scene != "" {
					return nil, bad(key, e, "a data source is either a data set (root) or a scene, not both")
				}
				if ds.Root != "" && !filepath.IsAbs(ds.Root) {
					ds.Root = filepath.Join(dir, ds.Root)
				}
				if ds.Scene != "" && !filepath.IsAbs(ds.Scene) {
					ds.Scene = filepath.Join(dir, ds.Scene)
				}
				s.Data = append(s.Data, ds)
			}
		case "metric":
			s.Metric = val.Value
		default:
			return nil, bad(key, top.Content[i], "unknown key (allowed: name, variants, trainruns, seeds, overrides, grid, list, data, metric)")
		}
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("sweep file %s: %w", path, err)
	}
	return s, nil
}

func checkKeys(n *yaml.Node, allowed ...string) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("want a mapping")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		ok := false
		for _, a := range allowed {
			ok = ok || n.Content[i].Value == a
		}
		if !ok {
			return fmt.Errorf("unknown key %q (allowed: %s)", n.Content[i].Value, strings.Join(allowed, ", "))
		}
	}
	return nil
}

func scalarList(n *yaml.Node) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return []string{n.Value}, nil
	case yaml.SequenceNode:
		var out []string
		for _, e := range n.Content {
			if e.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: want a plain value", e.Line)
			}
			out = append(out, e.Value)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a value or a list of values")
}

// valueText renders a YAML value as the text an override takes: scalars as written (so
// 1e-3 stays 1e-3), quoted strings quoted, lists and maps in flow style.
func valueText(n *yaml.Node) (string, error) {
	if n.Kind == yaml.ScalarNode {
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			return strconv.Quote(n.Value), nil
		}
		return n.Value, nil
	}
	c := *n
	c.Style = yaml.FlowStyle
	for _, ch := range c.Content {
		ch.Style |= yaml.FlowStyle
	}
	b, err := yaml.Marshal(&c)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func parseSeedsNode(n *yaml.Node) ([]uint64, error) {
	if n.Kind == yaml.ScalarNode {
		return ParseSeeds(n.Value)
	}
	vals, err := scalarList(n)
	if err != nil {
		return nil, err
	}
	return ParseSeeds(strings.Join(vals, ","))
}

// ParseSeeds reads "3" (seeds 0, 1, 2) or a list "1,7,9".
func ParseSeeds(s string) ([]uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if !strings.Contains(s, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxSeedCount {
			return nil, fmt.Errorf("seeds %q: want a count in 1..%d or a list like 1,7,9", s, MaxSeedCount)
		}
		out := make([]uint64, n)
		for i := range out {
			out[i] = uint64(i)
		}
		return out, nil
	}
	var out []uint64
	seen := map[uint64]bool{}
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("seeds %q: %q is not a non-negative integer", s, f)
		}
		if seen[v] {
			return nil, fmt.Errorf("seeds %q: %d appears twice", s, v)
		}
		seen[v] = true
		out = append(out, v)
	}
	return out, nil
}

// QuickSpec builds a sweep from the command line: variants, a seed count or list, and
// arguments key=value (fixed) or key=v1,v2,... (a grid axis; commas inside [] {} or
// quotes do not split).
func QuickSpec(variants []string, files []string, seeds string, args []string) (*Spec, error) {
	s := &Spec{Name: "sweep"}
	for _, v := range variants {
		s.Bases = append(s.Bases, Base{Variant: v})
	}
	for _, f := range files {
		s.Bases = append(s.Bases, Base{File: f})
	}
	var err error
	if s.Seeds, err = ParseSeeds(seeds); err != nil {
		return nil, fmt.Errorf("--seeds: %w", err)
	}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" || k == "+" {
			return nil, fmt.Errorf("argument %q: want key=value or key=v1,v2,...", a)
		}
		vals, err := splitValues(v)
		if err != nil {
			return nil, fmt.Errorf("argument %q: %w", a, err)
		}
		if len(vals) == 1 {
			s.Overrides = append(s.Overrides, a)
			continue
		}
		s.Grid = append(s.Grid, Axis{Key: k, Values: vals})
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// splitValues splits on commas outside brackets, braces and quotes.
func splitValues(v string) ([]string, error) {
	var out []string
	depth := 0
	var quote rune
	start := 0
	for i, r := range v {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '"' || r == '\'':
			quote = r
		case r == '[' || r == '{':
			depth++
		case r == ']' || r == '}':
			depth--
		case r == ',' && depth == 0:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	if depth != 0 || quote != 0 {
		return nil, fmt.Errorf("unbalanced brackets or quotes in %q", v)
	}
	out = append(out, v[start:])
	for _, x := range out {
		if strings.TrimSpace(x) == "" {
			return nil, fmt.Errorf("empty value in %q", v)
		}
	}
	return out, nil
}

func (s *Spec) check() error {
	if len(s.Bases) == 0 {
		return fmt.Errorf("no trainrun: give variants (--variant drcnn,concrete) or trainrun files")
	}
	seen := map[string]bool{}
	for _, b := range s.Bases {
		if b.Variant != "" {
			if _, ok := config.Variants[b.Variant]; !ok {
				return fmt.Errorf("unknown variant %q (allowed: %s)", b.Variant, strings.Join(config.VariantNames, ", "))
			}
		}
		if seen[b.Name()] {
			return fmt.Errorf("trainrun %q is listed twice", b.Name())
		}
		seen[b.Name()] = true
	}
	keys := map[string]bool{}
	for _, ax := range s.Grid {
		if keys[ax.Key] {
			return fmt.Errorf("grid key %q is given twice", ax.Key)
		}
		keys[ax.Key] = true
		if strings.Contains(strings.TrimPrefix(ax.Key, "+"), "=") {
			return fmt.Errorf("grid key %q contains '='", ax.Key)
		}
	}
	dn := map[string]bool{}
	for i, d := range s.Data {
		if d.Name == "" {
			return fmt.Errorf("data[%d]: a data source needs a name", i)
		}
		if dn[d.Name] {
			return fmt.Errorf("data source %q is listed twice", d.Name)
		}
		dn[d.Name] = true
	}
	if s.Metric == "" {
		s.Metric = DefaultMetric
	}
	return nil
}

// SceneSources makes one data source per labelled scene file (the quick form's --scene),
// named by the file's base name.
func SceneSources(paths []string) ([]DataSource, error) {
	var out []DataSource
	seen := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("--scene %s: %w", p, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("--scene %s: %w", p, err)
		}
		name := strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		if seen[name] {
			return nil, fmt.Errorf("--scene %s: two scenes named %s", p, name)
		}
		seen[name] = true
		out = append(out, DataSource{Name: name, Scene: abs})
	}
	return out, nil
}
