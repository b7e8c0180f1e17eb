package scene

import (
	"github.com/spectraclip/spectraclip/trainer"
)

// Defaults are the scene defaults of the gradient-trained variants, applied before the
// user's overrides (so any of them can be overridden). They were chosen on generated scenes
// and the shipped real scene (see the package tests and the README): a whole scene is one
// image per epoch, so there are more epochs than on the synthetic set.
var Defaults = map[string][]string{
	"drcnn":    append([]string{"training.trainer.max_epochs=40"}, monitorAP...),
	"concrete": append([]string{"training.trainer.max_epochs=40"}, monitorAP...),
}

// monitorAP selects checkpoints and plateaus by the validation pixels' average precision: the
// decider's IoU is 0 on most epochs of a scene with few anomaly pixels, so it cannot rank them.
var monitorAP = []string{
	"training.callbacks.checkpoint.monitor=metrics_anomaly/average_precision", "training.callbacks.checkpoint.mode=max",
	"training.scheduler.monitor=metrics_anomaly/average_precision", "training.scheduler.mode=max",
}

// ConfigOptions select a trainrun for a scene.
type ConfigOptions struct {
	Variant   string   // a shipped variant, or
	File      string   // a trainrun file
	Overrides []string // key=value, after the scene defaults
	Environ   []string
	Spec      Spec // the scene (overrides the trainrun's own data.scene)
}

// LoadConfig composes a trainrun for the scene: the variant's or file's config, the scene
// Defaults of a shipped variant, the overrides, and data.scene = o.Spec.
func LoadConfig(o ConfigOptions) (*trainer.Config, error) {
	ov := append([]string(nil), Defaults[o.Variant]...)
	if o.File != "" {
		ov = nil
	}
	ov = append(ov, o.Overrides...)
	cfg, _, err := trainer.LoadConfig(trainer.LoadOptions{Variant: o.Variant, File: o.File, Overrides: ov, Environ: o.Environ})
	if err != nil {
		return nil, err
	}
	cfg.Data.Scene = o.Spec.Map()
	return cfg, nil
}
