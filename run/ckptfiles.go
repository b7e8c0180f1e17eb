package run

import (
	"os"
	"path/filepath"
	"strings"
)

// CheckpointFiles names a checkpoint's weights, optimizer and state files: path is a checkpoint
// directory, or the prefix of the older three-file layout (…/last → last.weights.pt, …).
func CheckpointFiles(path string) (weights, optim, state string) {
	path = strings.TrimSuffix(strings.TrimSuffix(path, ".json"), ".weights.pt")
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return filepath.Join(path, CkptWeights), filepath.Join(path, CkptOptim), filepath.Join(path, CkptState)
	}
	return path + ".weights.pt", path + ".optim.pt", path + ".json"
}
