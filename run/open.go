package run

import (
	"fmt"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/nodes/detect"
	"github.com/spectraclip/spectraclip/torch"
)

// Artefact is a finished run reopened from its directory: its resolved config, the plugins
// it names and its saved pipeline (with the evaluated weights) on the placement's device.
type Artefact struct {
	Dir       string
	Cfg       *config.Config
	Pipeline  *nodes.Pipeline
	Registry  *nodes.Registry
	Placement Placement
}

// Device is the device the pipeline is on.
func (a *Artefact) Device() torch.Device { return a.Placement.Device }

// Close releases the pipeline. It is safe on nil and twice.
func (a *Artefact) Close() {
	if a != nil && a.Pipeline != nil {
		a.Pipeline.Close()
		a.Pipeline = nil
	}
}

// OpenOptions adjust Open.
type OpenOptions struct {
	// Config is the run's config when the caller has read it already (LoadConfig); nil =
	// read RUN/config.yaml.
	Config *config.Config
	// Placement is what the command asks for (--device, --threads); the run's own
	// training.device and training.threads fill in the rest. The placement is applied.
	Placement Request
	// Placed, when set, is the placement resolved already (Place) and used as it is.
	Placed *Placement
}

// LoadConfig reads the resolved config a run directory holds (RUN/config.yaml).
func LoadConfig(dir string) (*config.Config, error) {
	cfg, _, err := config.LoadConfig(config.LoadOptions{File: Path(dir, ConfigFile)})
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	return cfg, nil
}

// Open reopens the finished run in dir: its config, plugins and saved pipeline, placed as
// o.Placement asks over the run's own config (and that placement applied).
func Open(dir string, o OpenOptions) (*Artefact, error) {
	cfg := o.Config
	var err error
	if cfg == nil {
		if cfg, err = LoadConfig(dir); err != nil {
			return nil, err
		}
	}
	var pl Placement
	if o.Placed != nil {
		pl = *o.Placed
	} else if pl, err = Place(cfg, o.Placement); err != nil {
		return nil, err
	}
	if err := pl.Apply(); err != nil {
		return nil, err
	}
	if err := torch.SetCachingAllocator(true); err != nil {
		return nil, err
	}
	reg := nodes.NewRegistry()
	if err := LoadPlugins(reg, cfg); err != nil {
		return nil, err
	}
	// LibTorch's loader would block forever on a FIFO: only regular files are loaded.
	for _, f := range []string{PipelineFile, WeightsFile} {
		if p := Path(dir, f); exists(p) {
			if err := dataset.CheckRegular(p, "run "+dir+":"); err != nil {
				return nil, err
			}
		}
	}
	p, err := nodes.Load(Path(dir, PipelineFile), reg, pl.Device)
	if err != nil {
		if o.Placement.Device != "" {
			return nil, fmt.Errorf("run %s on %s: %w", dir, pl.Device, err)
		}
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	return &Artefact{Dir: dir, Cfg: cfg, Pipeline: p, Registry: reg, Placement: pl}, nil
}

// DetectorName is the name of the pipeline's detector (its metadata), "" without one.
func DetectorName(p *nodes.Pipeline) string {
	for _, n := range p.Nodes() {
		if d, ok := nodes.UnwrapNode(n).(interface{ Metadata() detect.Metadata }); ok {
			return d.Metadata().DetectorName
		}
	}
	return ""
}
