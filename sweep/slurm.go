package sweep

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spectraclip/spectraclip/internal/atomicfile"
)

// SlurmOptions shape the job-array script.
type SlurmOptions struct {
	CPUsPerTask int // --cpus-per-task (the task's training.threads); 0: 1
	GPUsPerTask int // --gpus-per-task; 0: none
	MaxParallel int // the array's %limit; 0: none
	// Extra are further sbatch options, "partition=gpu" or "--time=01:00:00".
	Extra []string
	// TaskArgs are added to every task's `spectraclip sweep --point` command.
	TaskArgs []string
}

// ScriptName is the job-array script inside the sweep directory.
const ScriptName = "sweep.sbatch"

// EmitSlurm writes DIR/sweep.sbatch: a job array with one task per point, each running
// `spectraclip sweep --out DIR --point $SLURM_ARRAY_TASK_ID` on the shared filesystem.
func EmitSlurm(dir string, plan *Plan, binary string, o SlurmOptions) (string, error) {
	if len(plan.Points) == 0 {
		return "", fmt.Errorf("sweep: no points to emit")
	}
	if binary == "" {
		return "", fmt.Errorf("sweep --emit slurm: the spectraclip executable is unknown (--bin)")
	}
	if o.CPUsPerTask <= 0 {
		o.CPUsPerTask = 1
	}
	if err := os.MkdirAll(filepath.Join(dir, "slurm"), 0o755); err != nil {
		return "", err
	}
	array := fmt.Sprintf("0-%d", len(plan.Points)-1)
	if o.MaxParallel > 0 {
		array += fmt.Sprintf("%%%d", o.MaxParallel)
	}
	var b strings.Builder
	b.WriteString("#!/bin/bash\n")
	fmt.Fprintf(&b, "#SBATCH --job-name=%s\n", sanitize("sweep-"+plan.Name))
	fmt.Fprintf(&b, "#SBATCH --array=%s\n", array)
	fmt.Fprintf(&b, "#SBATCH --output=%s\n", filepath.Join(dir, "slurm", "%A_%a.out"))
	fmt.Fprintf(&b, "#SBATCH --chdir=%s\n", plan.Workdir)
	fmt.Fprintf(&b, "#SBATCH --cpus-per-task=%d\n", o.CPUsPerTask)
	if o.GPUsPerTask > 0 {
		fmt.Fprintf(&b, "#SBATCH --gpus-per-task=%d\n", o.GPUsPerTask)
	}
	for _, e := range o.Extra {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if strings.ContainsAny(e, "\n\r") {
			return "", fmt.Errorf("sweep --slurm-opt %q: one option per flag, without newlines", e)
		}
		if !strings.HasPrefix(e, "-") {
			e = "--" + e
		}
		fmt.Fprintf(&b, "#SBATCH %s\n", e)
	}
	fmt.Fprintf(&b, "#\n# spectraclip sweep %q: %d points, one array task each (plan: %s).\n", plan.Name, len(plan.Points), filepath.Join(dir, PlanName))
	fmt.Fprintf(&b, "# Submit: sbatch %s\n# Then:   %s sweep --collect --out %s\n", shellQuote(filepath.Join(dir, ScriptName)), shellQuote(binary), shellQuote(dir))
	b.WriteString("set -u\n")
	args := []string{binary, "sweep", "--out", dir, "--point"}
	var q []string
	for _, a := range args {
		q = append(q, shellQuote(a))
	}
	line := strings.Join(q, " ") + ` "$SLURM_ARRAY_TASK_ID"`
	for _, a := range o.TaskArgs {
		line += " " + shellQuote(a)
	}
	b.WriteString("exec " + line + "\n")
	path := filepath.Join(dir, ScriptName)
	if err := atomicfile.WriteFile(path, []byte(b.String()), 0o755); err != nil {
		return "", err
	}
	return path, nil
}
