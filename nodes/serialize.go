package nodes

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
	"github.com/spectraclip/spectraclip/torch"
	"go.yaml.in/yaml/v3"
)

// PipelineConfig is the YAML form of a pipeline: what Save writes and Load, FromConfig read.
type PipelineConfig struct {
	Name        string             `yaml:"name" json:"name" mapstructure:"name"`
	Metadata    map[string]any     `yaml:"metadata,omitempty" json:"metadata,omitempty" mapstructure:"metadata"`
	Nodes       []NodeConfig       `yaml:"nodes" json:"nodes" mapstructure:"nodes"`
	Connections []ConnectionConfig `yaml:"connections" json:"connections" mapstructure:"connections"`
	BatchKeys   []string           `yaml:"batch_keys,omitempty" json:"batch_keys,omitempty" mapstructure:"batch_keys"`
}

// NodeConfig is one node of a PipelineConfig.
type NodeConfig struct {
	Name   string         `yaml:"name" json:"name" mapstructure:"name"`
	Type   string         `yaml:"type" json:"type" mapstructure:"type"`
	Params map[string]any `yaml:"params,omitempty" json:"params,omitempty" mapstructure:"params"`
}

// ConnectionConfig is one edge of a PipelineConfig, "node.port" on both ends.
type ConnectionConfig struct {
	Source string `yaml:"source" json:"source" mapstructure:"source"`
	Target string `yaml:"target" json:"target" mapstructure:"target"`
}

// DecodePipelineConfig converts a generic map (viper, a YAML sub-tree) into a config,
// rejecting unknown keys at any level of the structure (node params are free-form and
// checked by each node's factory).
func DecodePipelineConfig(m map[string]any) (PipelineConfig, error) {
	var cfg PipelineConfig
	if err := strictRemarshal(m, &cfg); err != nil {
		return cfg, fmt.Errorf("pipeline config: %w", err)
	}
	return cfg, nil
}

// strictRemarshal decodes a map into a struct through YAML, so the struct's yaml tags and
// KnownFields do the key checking.
func strictRemarshal(m any, out any) error {
	b, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	return decodeStrict(b, out)
}

func decodeStrict(b []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		if err.Error() == "EOF" {
			return fmt.Errorf("empty document")
		}
		return err
	}
	return nil
}

// Config returns the pipeline's description: nodes in topological order with their type
// and parameters, and the connections.
func (p *Pipeline) Config() PipelineConfig {
	cfg := PipelineConfig{Name: p.name, BatchKeys: p.BatchKeys()}
	if len(p.Metadata) > 0 {
		cfg.Metadata = map[string]any{}
		for k, v := range p.Metadata {
			cfg.Metadata[k] = v
		}
	}
	for _, name := range p.topo() {
		n := p.nodes[name]
		cfg.Nodes = append(cfg.Nodes, NodeConfig{Name: name, Type: n.Type(), Params: plainParams(n.Params())})
	}
	for _, e := range p.edges {
		cfg.Connections = append(cfg.Connections, ConnectionConfig{Source: e.FromNode + "." + e.FromPort, Target: e.ToNode + "." + e.ToPort})
	}
	return cfg
}

// plainParams turns typed slices into []any so the YAML is the same whatever slice type a
// node happens to keep.
func plainParams(m map[string]any) map[string]any {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case []float32:
			l := make([]any, len(x))
			for i, e := range x {
				l[i] = float64(e)
			}
			out[k] = l
		case float32:
			out[k] = float64(x)
		default:
			out[k] = v
		}
	}
	return out
}

// FromConfig builds a pipeline through the registry (nil means Builtins) and connects it.
func FromConfig(cfg PipelineConfig, reg *Registry) (*Pipeline, error) {
	if reg == nil {
		reg = Builtins
	}
	p := NewPipeline(cfg.Name, reg)
	for k, v := range cfg.Metadata {
		p.Metadata[k] = v
	}
	p.SetBatchKeys(cfg.BatchKeys)
	for i, nc := range cfg.Nodes {
		if nc.Name == "" || nc.Type == "" {
			p.Close()
			return nil, fmt.Errorf("pipeline %q: nodes[%d]: name and type are required", cfg.Name, i)
		}
		n, err := reg.New(nc.Type, nc.Name, nc.Params)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("pipeline %q: nodes[%d]: %w", cfg.Name, i, err)
		}
		n.SetName(nc.Name)
		if err := p.AddStrict(n); err != nil {
			if c, ok := n.(Closer); ok {
				c.Close()
			}
			p.Close()
			return nil, err
		}
	}
	for i, c := range cfg.Connections {
		if err := p.Connect(c.Source, c.Target); err != nil {
			p.Close()
			return nil, fmt.Errorf("pipeline %q: connections[%d]: %w", cfg.Name, i, err)
		}
	}
	return p, nil
}

// WeightsPath returns the weights file that goes with a pipeline YAML: "<base>.weights.pt".
func WeightsPath(yamlPath string) string {
	return strings.TrimSuffix(yamlPath, filepath.Ext(yamlPath)) + ".weights.pt"
}

// Save writes the pipeline's YAML and, beside it, the weights file with every Stateful
// node's State under "node/param". The weights are written first and each file is
// renamed into place, so a crash never leaves a YAML that points at missing weights.
func (p *Pipeline) Save(yamlPath string) error {
	state, err := p.State()
	if err != nil {
		return fmt.Errorf("save %s: %w", yamlPath, err)
	}
	b, err := yaml.Marshal(p.Config())
	if err != nil {
		return fmt.Errorf("save %s: %w", yamlPath, err)
	}
	if err := torch.SaveTensors(WeightsPath(yamlPath), state); err != nil {
		return fmt.Errorf("save %s: %w", yamlPath, err)
	}
	if err := WriteFileAtomic(yamlPath, b); err != nil {
		return fmt.Errorf("save %s: %w", yamlPath, err)
	}
	return nil
}

// State collects every Stateful node's parameters and buffers under "node/param"; the
// tensors stay owned by the nodes.
func (p *Pipeline) State() (map[string]*torch.Tensor, error) {
	state := map[string]*torch.Tensor{}
	for _, name := range p.topo() {
		st, ok := p.nodes[name].(Stateful)
		if !ok {
			continue
		}
		for _, nt := range st.State() {
			if nt.Tensor == nil || !nt.Tensor.Valid() {
				return nil, fmt.Errorf("node %q: state %q is nil or freed", name, nt.Name)
			}
			state[name+"/"+nt.Name] = nt.Tensor
		}
	}
	return state, nil
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it, renames it into
// place and syncs the directory (atomicfile.WriteFile), so that a crash never leaves a
// truncated file where a good one was. The file's mode is 0600, as it has always been. On a
// full disk the error says so and names path.
func WriteFileAtomic(path string, data []byte) error {
	return atomicfile.WriteFile(path, data, 0o600)
}

// ReadPipelineConfig reads a pipeline YAML, rejecting unknown keys.
func ReadPipelineConfig(yamlPath string) (PipelineConfig, error) {
	var cfg PipelineConfig
	b, err := os.ReadFile(yamlPath)
	if err != nil {
		return cfg, fmt.Errorf("load pipeline: %w", err)
	}
	if err := decodeStrict(b, &cfg); err != nil {
		return cfg, fmt.Errorf("load pipeline %s: %w", yamlPath, err)
	}
	return cfg, nil
}

// Load rebuilds a pipeline saved by Save: nodes through the registry (nil means
// Builtins), connections, then the weights onto dev. Missing or unexpected weights are
// errors naming them.
func Load(yamlPath string, reg *Registry, dev torch.Device) (*Pipeline, error) {
	cfg, err := ReadPipelineConfig(yamlPath)
	if err != nil {
		return nil, err
	}
	p, err := FromConfig(cfg, reg)
	if err != nil {
		return nil, fmt.Errorf("load pipeline %s: %w", yamlPath, err)
	}
	if err := p.To(dev); err != nil {
		p.Close()
		return nil, fmt.Errorf("load pipeline %s: %w", yamlPath, err)
	}
	if err := p.LoadWeights(WeightsPath(yamlPath), dev); err != nil {
		p.Close()
		return nil, fmt.Errorf("load pipeline %s: %w", yamlPath, err)
	}
	return p, nil
}

// LoadWeights reads a weights file written by Save into the Stateful nodes; every node's
// state must be present and nothing else.
func (p *Pipeline) LoadWeights(path string, dev torch.Device) error {
	loaded, err := torch.LoadTensorsMax(path, dev, p.expectedStateBytes())
	if err != nil {
		return fmt.Errorf("weights: %w", err)
	}
	defer torch.FreeAll(loaded)
	if err := p.LoadState(loaded); err != nil {
		return fmt.Errorf("weights %s: %w", path, err)
	}
	return nil
}

// openStateAllowance is the tensor data a weights file may hold for each node whose state is
// only known after its fit (a PCA's components, a plugin node's fitted buffers).
const openStateAllowance = 256 << 20

// expectedStateBytes bounds the tensor data of the pipeline's weights file, so that a file far
// larger (a sparse 8 GiB file, #25 item 6) is refused before it is read: every Stateful
// node's state as built, and openStateAllowance per node whose state comes from a fit.
func (p *Pipeline) expectedStateBytes() int64 {
	var n int64
	for _, name := range p.order {
		st, ok := p.nodes[name].(Stateful)
		if !ok {
			continue
		}
		names := st.State()
		if f, ok := p.nodes[name].(Fitter); ok && f.RequiresFit() {
			n += openStateAllowance
		}
		for _, nt := range names {
			if nt.Tensor != nil && nt.Tensor.Valid() {
				n += nt.Tensor.Numel() * int64(nt.Tensor.DType().Size())
			}
		}
	}
	return max(n, 1)
}

// LoadState copies "node/param" tensors (as State returns them) into the Stateful nodes;
// every node's state must be present and nothing else.
func (p *Pipeline) LoadState(loaded map[string]*torch.Tensor) error {
	type slot struct{ node, param string }
	expected := map[string]slot{}
	// A node that gains its state in a statistical fit (a PCA's components, a plugin
	// node's fitted buffers) may report no state before the fit, so its key set cannot
	// be known from a freshly built node: every "node/…" entry is handed to it and the
	// node's own LoadState checks them.
	open := map[string]bool{}
	for _, name := range p.order {
		if st, ok := p.nodes[name].(Stateful); ok {
			names := st.State()
			if f, ok := p.nodes[name].(Fitter); ok && len(names) == 0 && f.RequiresFit() && !f.Fitted() {
				open[name] = true
				continue
			}
			for _, nt := range names {
				expected[name+"/"+nt.Name] = slot{name, nt.Name}
			}
		}
	}
	var missing, unexpected []string
	for k := range expected {
		if _, ok := loaded[k]; !ok {
			missing = append(missing, k)
		}
	}
	for k := range loaded {
		if _, ok := expected[k]; ok {
			continue
		}
		if node, param, ok := strings.Cut(k, "/"); ok && open[node] && param != "" {
			expected[k] = slot{node, param}
			continue
		}
		unexpected = append(unexpected, k)
	}
	if len(missing) > 0 || len(unexpected) > 0 {
		sort.Strings(missing)
		sort.Strings(unexpected)
		return fmt.Errorf("missing keys [%s], unexpected keys [%s]", strings.Join(missing, ", "), strings.Join(unexpected, ", "))
	}
	per := map[string]map[string]*torch.Tensor{}
	for k, s := range expected {
		if per[s.node] == nil {
			per[s.node] = map[string]*torch.Tensor{}
		}
		per[s.node][s.param] = loaded[k]
	}
	for _, name := range p.order {
		st, ok := p.nodes[name].(Stateful)
		if !ok {
			continue
		}
		m := per[name]
		if m == nil {
			if open[name] {
				continue // saved before its fit: it stays unfitted
			}
			m = map[string]*torch.Tensor{}
		}
		if err := st.LoadState(m); err != nil {
			return fmt.Errorf("node %q: %w", name, err)
		}
	}
	return nil
}
