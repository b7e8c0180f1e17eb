package torch

/*
#include "spectraclip.h"
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
)

// OptimKind names one of LibTorch's optimizers.
type OptimKind int

const (
	SGD OptimKind = iota
	Adam
	AdamW
)

// ParseOptimKind reads "sgd", "adam" or "adamw".
func ParseOptimKind(s string) (OptimKind, error) {
	switch strings.ToLower(s) {
	case "sgd":
		return SGD, nil
	case "adam":
		return Adam, nil
	case "adamw":
		return AdamW, nil
	}
	return 0, fmt.Errorf("torch: unknown optimizer %q (allowed: sgd, adam, adamw)", s)
}

// OptimConfig holds the hyper-parameters; zero Betas/Eps take PyTorch's defaults.
type OptimConfig struct {
	LR          float64
	Betas       [2]float64
	Eps         float64
	WeightDecay float64
	Momentum    float64
	Nesterov    bool
}

// Optimizer wraps a LibTorch optimizer over a fixed list of parameters.
type Optimizer struct {
	h       C.sc_optim
	cleanup runtime.Cleanup
	Kind    OptimKind
}

// NewOptimizer builds an optimizer over params (which must require grad).
func NewOptimizer(kind OptimKind, params []*Tensor, cfg OptimConfig) (*Optimizer, error) {
	if len(params) == 0 {
		return nil, &Error{Op: "optimizer", Msg: "no parameters to optimize"}
	}
	if cfg.Betas == [2]float64{} {
		cfg.Betas = [2]float64{0.9, 0.999}
	}
	if cfg.Eps == 0 {
		cfg.Eps = 1e-8
	}
	p, free, err := handles(params)
	if err != nil {
		return nil, err
	}
	defer free()
	var h C.sc_optim
	defer runtime.KeepAlive(params)
	if err := takeErr("optimizer", C.sc_optim_new(C.int(kind), p, C.int(len(params)), C.double(cfg.LR),
		C.double(cfg.Betas[0]), C.double(cfg.Betas[1]), C.double(cfg.Eps), C.double(cfg.WeightDecay),
		C.double(cfg.Momentum), cbool(cfg.Nesterov), &h)); err != nil {
		return nil, err
	}
	o := &Optimizer{h: h, Kind: kind}
	o.cleanup = runtime.AddCleanup(o, func(h C.sc_optim) { C.sc_optim_free(h) }, h)
	return o, nil
}

func (o *Optimizer) check(op string) error {
	if o == nil || o.h == nil {
		return &Error{Op: op, Msg: "nil or freed optimizer"}
	}
	return nil
}

// Free releases the optimizer and its state; idempotent.
func (o *Optimizer) Free() {
	if o == nil || o.h == nil {
		return
	}
	o.cleanup.Stop()
	C.sc_optim_free(o.h)
	o.h = nil
}

// Step applies one update from the accumulated gradients.
func (o *Optimizer) Step() error {
	if err := o.check("optimizer step"); err != nil {
		return err
	}
	defer runtime.KeepAlive(o)
	return takeErr("optimizer step", C.sc_optim_step(o.h))
}

// ZeroGrad clears the parameters' gradients.
func (o *Optimizer) ZeroGrad() error {
	if err := o.check("optimizer zero_grad"); err != nil {
		return err
	}
	defer runtime.KeepAlive(o)
	return takeErr("optimizer zero_grad", C.sc_optim_zero_grad(o.h))
}

// LR returns the learning rate of the first parameter group.
func (o *Optimizer) LR() (float64, error) {
	if err := o.check("optimizer lr"); err != nil {
		return 0, err
	}
	var v C.double
	defer runtime.KeepAlive(o)
	err := takeErr("optimizer lr", C.sc_optim_get_lr(o.h, &v))
	return float64(v), err
}

// SetLR sets the learning rate of every parameter group.
func (o *Optimizer) SetLR(lr float64) error {
	if err := o.check("optimizer set_lr"); err != nil {
		return err
	}
	defer runtime.KeepAlive(o)
	return takeErr("optimizer set_lr", C.sc_optim_set_lr(o.h, C.double(lr)))
}

// Save writes the optimizer's state (moments, step counts, options) to path atomically.
func (o *Optimizer) Save(path string) error {
	if err := o.check("optimizer save"); err != nil {
		return err
	}
	defer runtime.KeepAlive(o)
	return atomicfile.WriteVia(path, 0o644, func(tmp string) error {
		cp := cstr(tmp)
		defer freeC(cp)
		return takeErr("optimizer save "+path, C.sc_optim_save(o.h, cp))
	})
}

// Load restores state written by Save (moments, step counts and each group's options,
// the learning rate included) for an optimizer over the same parameters.
func (o *Optimizer) Load(path string) error {
	if err := o.check("optimizer load"); err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("torch: optimizer load %s: %w", path, err)
	}
	cp := cstr(path)
	defer freeC(cp)
	defer runtime.KeepAlive(o)
	return takeErr("optimizer load "+path, C.sc_optim_load(o.h, cp))
}
