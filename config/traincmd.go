package config

import "strings"

// TrainSubcommand is the name of the CLI command that trains one run.
const TrainSubcommand = "train"

// The flags of `spectraclip train` that TrainCommand describes. cmd/spectraclip defines
// train's flags with these names and parses them into a TrainCommand; the sweep builds the
// command of each point from a TrainCommand. A renamed flag changes both sides at once.
const (
	TrainFlagVariant     = "variant"
	TrainFlagConfig      = "config"
	TrainFlagConfigShort = "c"
	TrainFlagOut         = "out"
	TrainFlagResume      = "resume"
	TrainFlagScene       = "scene"
)

// TrainCommand is one `spectraclip train` invocation: what a process that trains one run
// is given. The zero value of each field means "not given".
type TrainCommand struct {
	// Variant is a shipped trainrun (pca, drcnn, concrete): --variant.
	Variant string
	// File is a trainrun YAML file: -c/--config.
	File string
	// Out is the run directory: --out.
	Out string
	// Resume is the checkpoint to resume the run from: --resume.
	Resume string
	// Scene is a labelled scene to train on, split by pixels: --scene.
	Scene string
	// Overrides are key=value config overrides, the trailing arguments.
	Overrides []string
}

// Args is the command line after the program's name: the subcommand, the flags that are
// given (each as its own argument, the value in the next one) and the overrides. An
// override that starts with "-" would read as a flag: the overrides then follow "--".
func (c *TrainCommand) Args() []string {
	args := []string{TrainSubcommand}
	if c.Variant != "" {
		args = append(args, "--"+TrainFlagVariant, c.Variant)
	}
	if c.File != "" {
		args = append(args, "-"+TrainFlagConfigShort, c.File)
	}
	if c.Out != "" {
		args = append(args, "--"+TrainFlagOut, c.Out)
	}
	if c.Resume != "" {
		args = append(args, "--"+TrainFlagResume, c.Resume)
	}
	if c.Scene != "" {
		args = append(args, "--"+TrainFlagScene, c.Scene)
	}
	for _, o := range c.Overrides {
		if strings.HasPrefix(o, "-") {
			args = append(args, "--")
			break
		}
	}
	return append(args, c.Overrides...)
}
