package run

import (
	"fmt"
	datanode "github.com/spectraclip/spectraclip/nodes/data"
	"maps"
	"slices"
	"strings"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
)

// LoadPlugins loads the plugins cfg names (plugins.NAME) into reg, in name order.
func LoadPlugins(reg *nodes.Registry, cfg *config.Config) error {
	names := slices.Sorted(maps.Keys(cfg.Plugins))
	for _, n := range names {
		pc, err := nodes.DecodePluginConfig(cfg.Plugins[n])
		if err != nil {
			return fmt.Errorf("plugins.%s: %w", n, err)
		}
		if err := reg.LoadPlugin(n, pc); err != nil {
			return fmt.Errorf("plugins.%s: %w", n, err)
		}
	}
	return nil
}

// BuildPipeline creates the nodes of cfg.Pipeline through the registry and connects them.
// Input channel counts left at their defaults are taken from the dataset, and a Concrete
// selector's max_epochs from training.trainer.max_epochs.
func BuildPipeline(cfg *config.Config, reg *nodes.Registry, ds *dataset.Dataset) (*nodes.Pipeline, error) {
	p := nodes.NewPipeline(cfg.Name, reg)
	p.SetBatchKeys(datanode.BatchKeys)
	for _, name := range slices.Sorted(maps.Keys(cfg.Pipeline)) {
		spec := cfg.Pipeline[name]
		typ, _ := spec["type"].(string)
		params := map[string]any{}
		for k, v := range spec {
			if k != "type" {
				params[k] = v
			}
		}
		if ds != nil {
			if _, ok := params["input_channels"]; ok || strings.Contains(typ, "Mixer") || strings.Contains(typ, "Selector") {
				if v, ok := params["input_channels"]; !ok || v == nil {
					params["input_channels"] = ds.Bands
				}
			}
		}
		if strings.Contains(typ, "Concrete") {
			if _, ok := params["max_epochs"]; !ok {
				params["max_epochs"] = cfg.Training.Trainer.MaxEpochs
			}
			if _, ok := params["seed"]; !ok {
				params["seed"] = int(cfg.Training.Seed)
			}
		}
		if strings.Contains(typ, "ChannelMixer") {
			if _, ok := params["seed"]; !ok {
				params["seed"] = int(cfg.Training.Seed)
			}
		}
		n, err := reg.New(typ, name, params)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("pipeline.%s: %w", name, err)
		}
		if err := p.AddStrict(n); err != nil {
			p.Close()
			return nil, fmt.Errorf("pipeline.%s: %w", name, err)
		}
	}
	for _, c := range cfg.Connections {
		a, b, err := config.ParseConnection(c)
		if err != nil {
			p.Close()
			return nil, err
		}
		if err := p.Connect(a, b); err != nil {
			p.Close()
			return nil, fmt.Errorf("connections: %w", err)
		}
	}
	if err := p.Validate(); err != nil {
		p.Close()
		return nil, err
	}
	if len(cfg.FreezeNodes) > 0 {
		if err := p.Freeze(cfg.FreezeNodes...); err != nil {
			p.Close()
			return nil, fmt.Errorf("freeze_nodes: %w", err)
		}
	}
	if len(cfg.UnfreezeNodes) > 0 {
		if err := p.Unfreeze(cfg.UnfreezeNodes...); err != nil {
			p.Close()
			return nil, fmt.Errorf("unfreeze_nodes: %w", err)
		}
	}
	return p, nil
}
