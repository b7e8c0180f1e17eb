package trainer

import (
	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/torch"
)

// SumLosses adds up the outputs of cfg's loss nodes in out (in a fixed order), as a
// training step does; ok is false when none produced a tensor. The bench package times
// training steps with it.
func SumLosses(cfg *config.Config, p *nodes.Pipeline, s *torch.Scope, out nodes.Outputs) (*torch.Tensor, bool) {
	r := &Run{Cfg: cfg, Pipeline: p}
	return r.sumLosses(s, out)
}
