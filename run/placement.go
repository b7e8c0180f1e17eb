package run

import (
	"fmt"
	"runtime"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dist"
	"github.com/spectraclip/spectraclip/torch"
)

// Placement is where a process computes: its device, its LibTorch thread count and whether
// TF32 is allowed. It is resolved once (Place) from the command's flags, the run's config and
// the environment, and applied in one place (Apply): no other package sets LibTorch's thread
// count or parses a device string.
type Placement struct {
	Device  torch.Device
	Threads int   // LibTorch intra-op threads (> 0)
	TF32    *bool // nil: LibTorch's defaults
}

// Request is what a command asks of the placement; zero values defer to the config.
type Request struct {
	// Device is a --device flag ("" = the config's training.device, "cpu" without a config).
	Device string
	// Threads is a --threads flag (0 = the config's training.threads; 0 there too =
	// automatic: one per CPU core, shared equally between a data-parallel job's local ranks).
	Threads int
	// TF32 is a flag's allow_tf32 (nil = the config's training.allow_tf32).
	TF32 *bool
	// Local is this process's place in a data-parallel job (dist.ParseEnv: torchrun or
	// Slurm); nil for one process. A device "cuda" then becomes cuda:LOCAL_RANK modulo the
	// devices CUDA_VISIBLE_DEVICES leaves visible (under srun --gpus-per-task 1 each task
	// sees one device, its cuda:0).
	Local *dist.Env
	// Share is how many processes or workers share this machine's cores equally when the
	// thread count is automatic (0 or 1: none; a data-parallel job's local ranks count too).
	Share int
	// DeviceFrom and ThreadsFrom name where the device and thread count came from in errors
	// ("--device"); "" = the config key.
	DeviceFrom, ThreadsFrom string
}

// Place resolves a placement from the request, cfg (nil: flags only) and the environment.
func Place(cfg *config.Config, req Request) (Placement, error) {
	devKey, thrKey := "training.device", "training.threads"
	dev, threads, tf32 := req.Device, req.Threads, req.TF32
	if dev != "" && req.DeviceFrom != "" {
		devKey = req.DeviceFrom
	}
	if threads != 0 && req.ThreadsFrom != "" {
		thrKey = req.ThreadsFrom
	}
	if cfg != nil {
		if dev == "" {
			dev = cfg.Training.Device
		}
		if threads == 0 {
			threads = cfg.Training.Threads
		}
		if tf32 == nil {
			tf32 = cfg.Training.AllowTF32
		}
	}
	if dev == "" {
		dev = "cpu"
	}
	if req.Local != nil && dev == "cuda" {
		idx := req.Local.LocalRank
		if n := torch.CUDADeviceCount(); n > 0 {
			idx %= n
		}
		dev = fmt.Sprintf("cuda:%d", idx)
	}
	d, err := torch.ParseDevice(dev)
	if err != nil {
		return Placement{}, fmt.Errorf("%s: %w", devKey, err)
	}
	if threads < 0 {
		return Placement{}, fmt.Errorf("%s %d: must be 0 (automatic) or more", thrKey, threads)
	}
	if threads == 0 {
		share := req.Share
		if req.Local != nil {
			share = max(share, req.Local.LocalWorld)
		}
		threads = AutoThreads(share)
	}
	return Placement{Device: d, Threads: threads, TF32: tf32}, nil
}

// AutoThreads is the automatic thread count: one per CPU core (LibTorch's own default on
// these machines is 1, which leaves cores idle), shared equally by share workers or local
// ranks (at least one each).
func AutoThreads(share int) int {
	return max(1, runtime.NumCPU()/max(share, 1))
}

// Apply sets the placement's thread count and TF32 mode in LibTorch (process-wide).
func (p Placement) Apply() error {
	if err := torch.SetNumThreads(p.Threads); err != nil {
		return fmt.Errorf("threads %d: %w", p.Threads, err)
	}
	if p.TF32 != nil {
		if err := torch.SetAllowTF32(*p.TF32); err != nil {
			return fmt.Errorf("training.allow_tf32: %w", err)
		}
	}
	return nil
}
