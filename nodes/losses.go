package nodes

import (
	"maps"
	"slices"

	"github.com/spectraclip/spectraclip/torch"
)

// SumLosses adds up the tensors the loss nodes named (a trainrun's loss_nodes) put in o, in
// a fixed order (the names as given, each node's ports sorted), as a training step does;
// ok is false when none produced a tensor.
func (o Outputs) SumLosses(s *torch.Scope, lossNodes []string) (total *torch.Tensor, ok bool) {
	for _, name := range lossNodes {
		ports, found := o[name]
		if !found {
			continue
		}
		for _, port := range slices.Sorted(maps.Keys(ports)) {
			t, isT := ports[port].(*torch.Tensor)
			if !isT || !t.Valid() {
				continue
			}
			if total == nil {
				total = t
			} else {
				total = s.Add(total, t)
			}
		}
	}
	return total, total != nil
}

// LossParts returns each loss node's value for logging: keyed by node, or node_port for a
// node with several outputs.
func (o Outputs) LossParts(lossNodes []string) map[string]float64 {
	m := map[string]float64{}
	for _, name := range lossNodes {
		for port, v := range o[name] {
			if t, ok := v.(*torch.Tensor); ok && t.Valid() {
				if f, err := t.Item(); err == nil {
					key := name
					if len(o[name]) > 1 {
						key = name + "_" + port
					}
					m[key] = f
				}
			}
		}
	}
	return m
}
