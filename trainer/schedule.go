package trainer

import (
	"fmt"
	"math"

	"github.com/spectraclip/spectraclip/config"
)

// Scheduler adjusts the learning rate once per epoch. Unlike the reference's local examples
// (which configure a scheduler and never pass it to the trainer), the schedule here is applied.
type Scheduler interface {
	// Step is called after each epoch's validation with the monitored value (NaN when the
	// scheduler does not monitor anything) and returns the new learning rate.
	Step(epoch int, lr, monitored float64) float64
	State() SchedulerState
	SetState(SchedulerState)
}

// SchedulerState is what a checkpoint keeps of a scheduler.
type SchedulerState struct {
	Best      config.Float `json:"best"`
	NumBad    int          `json:"num_bad"`
	Cooldown  int          `json:"cooldown"`
	BaseLR    float64      `json:"base_lr"`
	LastEpoch int          `json:"last_epoch"`
}

// NewScheduler builds the configured schedule; nil when none is configured.
func NewScheduler(c config.SchedulerConfig, baseLR float64, maxEpochs int) (Scheduler, error) {
	switch c.Name {
	case "", "none":
		return nil, nil
	case "reduce_on_plateau", "plateau":
		p := &Plateau{cfg: c}
		p.st.BaseLR = baseLR
		p.st.Best = config.Float(math.NaN())
		if p.cfg.Mode == "" {
			p.cfg.Mode = "min"
		}
		if p.cfg.ThresholdMode == "" {
			p.cfg.ThresholdMode = "rel"
		}
		if p.cfg.ThresholdMode != "rel" && p.cfg.ThresholdMode != "abs" {
			return nil, fmt.Errorf("training.scheduler.threshold_mode: %q (allowed: rel, abs)", c.ThresholdMode)
		}
		if p.cfg.Factor <= 0 || p.cfg.Factor >= 1 {
			return nil, fmt.Errorf("training.scheduler.factor: %g must be in (0,1)", c.Factor)
		}
		return p, nil
	case "cosine":
		t := c.TMax
		if t <= 0 {
			t = maxEpochs
		}
		return &Cosine{TMax: t, EtaMin: c.MinLR, st: SchedulerState{BaseLR: baseLR}}, nil
	case "step":
		if c.StepSize <= 0 {
			return nil, fmt.Errorf("training.scheduler.step_size: %d must be > 0", c.StepSize)
		}
		return &StepLR{StepSize: c.StepSize, Gamma: c.Gamma, st: SchedulerState{BaseLR: baseLR}}, nil
	case "exponential":
		return &StepLR{StepSize: 1, Gamma: c.Gamma, st: SchedulerState{BaseLR: baseLR}}, nil
	}
	return nil, fmt.Errorf("training.scheduler.name: unknown %q", c.Name)
}

// Plateau is ReduceLROnPlateau with PyTorch's semantics (mode, factor, patience,
// threshold and its mode, cooldown, min_lr, eps).
type Plateau struct {
	cfg config.SchedulerConfig
	st  SchedulerState
}

func (p *Plateau) better(a, best float64) bool {
	if math.IsNaN(best) {
		return true
	}
	t := p.cfg.Threshold
	switch {
	case p.cfg.Mode == "min" && p.cfg.ThresholdMode == "rel":
		return a < best*(1-t)
	case p.cfg.Mode == "min":
		return a < best-t
	case p.cfg.ThresholdMode == "rel":
		return a > best*(1+t)
	default:
		return a > best+t
	}
}

// Step implements Scheduler.
func (p *Plateau) Step(epoch int, lr, v float64) float64 {
	p.st.LastEpoch = epoch
	// NaN is never an improvement (PyTorch's comparisons with NaN are false)
	if !math.IsNaN(v) && p.better(v, float64(p.st.Best)) {
		p.st.Best = config.Float(v)
		p.st.NumBad = 0
	} else {
		p.st.NumBad++
	}
	if p.st.Cooldown > 0 {
		p.st.Cooldown--
		p.st.NumBad = 0
	}
	if p.st.NumBad > p.cfg.Patience {
		n := math.Max(lr*p.cfg.Factor, p.cfg.MinLR)
		if lr-n > p.cfg.Eps {
			lr = n
		}
		p.st.Cooldown = p.cfg.Cooldown
		p.st.NumBad = 0
	}
	return lr
}

func (p *Plateau) State() SchedulerState     { return p.st }
func (p *Plateau) SetState(s SchedulerState) { p.st = s }

// Cosine anneals from the base rate to EtaMin over TMax epochs and, as PyTorch's
// CosineAnnealingLR, keeps following the cosine beyond TMax (back up towards the base rate).
type Cosine struct {
	TMax   int
	EtaMin float64
	st     SchedulerState
}

// Step implements Scheduler.
func (c *Cosine) Step(epoch int, lr, _ float64) float64 {
	c.st.LastEpoch = epoch + 1
	t := float64(c.st.LastEpoch)
	return c.EtaMin + (c.st.BaseLR-c.EtaMin)*(1+math.Cos(math.Pi*t/float64(c.TMax)))/2
}

func (c *Cosine) State() SchedulerState     { return c.st }
func (c *Cosine) SetState(s SchedulerState) { c.st = s }

// StepLR multiplies the rate by Gamma every StepSize epochs.
type StepLR struct {
	StepSize int
	Gamma    float64
	st       SchedulerState
}

// Step implements Scheduler.
func (s *StepLR) Step(epoch int, lr, _ float64) float64 {
	s.st.LastEpoch = epoch + 1
	return s.st.BaseLR * math.Pow(s.Gamma, float64(s.st.LastEpoch/s.StepSize))
}

func (s *StepLR) State() SchedulerState      { return s.st }
func (s *StepLR) SetState(st SchedulerState) { s.st = st }
