package main

import (
	"io"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/spectraclip/spectraclip/config"
)

// parseTrain runs the CLI's root command on args with the train command's own flags and
// argument handling, and returns what train would have been given instead of training.
func parseTrain(t *testing.T, args []string) (*config.TrainCommand, error) {
	t.Helper()
	root := NewRootCmd(io.Discard, io.Discard)
	real := subcommand(t, root, config.TrainSubcommand)
	var got *config.TrainCommand
	parsed := trainCmd(func(o *trainOptions) error {
		c := o.TrainCommand
		got = &c
		return nil
	})
	// the stand-in must be the real command, but for what it runs
	if parsed.Name() != real.Name() || !reflect.DeepEqual(flagNames(parsed.Flags()), flagNames(real.Flags())) {
		t.Fatalf("trainCmd builds %q with flags %v; the CLI's train command is %q with %v", parsed.Name(), flagNames(parsed.Flags()), real.Name(), flagNames(real.Flags()))
	}
	root.RemoveCommand(real)
	root.AddCommand(parsed)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		return nil, err
	}
	if got == nil {
		t.Fatalf("spectraclip %q did not run train", args)
	}
	return got, nil
}

func subcommand(t *testing.T, root *cobra.Command, name string) *cobra.Command {
	t.Helper()
	for _, c := range root.Commands() {
		if c.Name() == name {
			return c
		}
	}
	t.Fatalf("the CLI has no %q command", name)
	return nil
}

func flagNames(fs *pflag.FlagSet) []string {
	var out []string
	fs.VisitAll(func(f *pflag.Flag) { out = append(out, f.Name+"/"+f.Shorthand) })
	return out
}

// randomText is up to n characters of those that trip command lines: spaces, '=', quotes,
// dashes, shell characters, non-ASCII.
func randomText(rng *rand.Rand, n int) string {
	alphabet := []rune("ab z09 =-_./'\"$\\*é漢\t")
	var b strings.Builder
	for i := rng.Intn(n + 1); i > 0; i-- {
		b.WriteRune(alphabet[rng.Intn(len(alphabet))])
	}
	return b.String()
}

func randomTrainCommand(rng *rand.Rand) config.TrainCommand {
	maybe := func(p float64, prefix string) string {
		if rng.Float64() >= p {
			return ""
		}
		s := prefix + randomText(rng, 12)
		if rng.Intn(8) == 0 {
			s = "-" + s // a value that looks like a flag
		}
		if s == "" {
			s = "x"
		}
		return s
	}
	c := config.TrainCommand{
		Variant: maybe(0.5, ""),
		File:    maybe(0.5, "dir with spaces/"),
		Out:     maybe(0.8, "out dir/"),
		Resume:  maybe(0.3, "run dir/checkpoints/"),
		Scene:   maybe(0.3, ""),
	}
	for i := rng.Intn(5); i > 0; i-- {
		key := "training.optimizer.lr"
		switch rng.Intn(4) {
		case 0:
			key = "data.root"
		case 1:
			key = "k" + randomText(rng, 6)
		case 2:
			if rng.Intn(4) == 0 {
				key = "-" + randomText(rng, 4) // reads as a flag unless after --
			}
		}
		c.Overrides = append(c.Overrides, key+"="+randomText(rng, 10)+"="+randomText(rng, 4))
	}
	return c
}

// TestTrainCommandRoundTrip: a TrainCommand's Args, parsed by the CLI's train command,
// give the same TrainCommand back. The sweep builds its points' commands with Args, so
// this fails when train's flags and config.TrainCommand disagree.
func TestTrainCommandRoundTrip(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))
	cases := []config.TrainCommand{
		{},
		{Variant: "drcnn", Out: "runs/a b", Overrides: []string{"training.seed=1", "training.threads=2"}},
		{File: "/tmp/my run.yaml", Out: "o", Scene: "abu-airport-1.mat", Overrides: []string{"data.root=a=b c"}},
		{Out: "runs/x", Resume: "runs/x/checkpoints/last"},
		{Variant: "pca", Overrides: []string{"-weird=1", "a=b"}},
	}
	for i := 0; i < 300; i++ {
		cases = append(cases, randomTrainCommand(rng))
	}
	for _, want := range cases {
		args := want.Args()
		if len(args) == 0 || args[0] != config.TrainSubcommand {
			t.Fatalf("%+v: Args %q does not start with the train command", want, args)
		}
		got, err := parseTrain(t, args)
		if err != nil {
			t.Fatalf("spectraclip %q: %v", args, err)
		}
		if len(got.Overrides) == 0 && len(want.Overrides) == 0 {
			got.Overrides = want.Overrides // nil and empty are both none
		}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("spectraclip %q parses as\n%#v\nwant\n%#v", args, *got, want)
		}
	}
}

// TestTrainFlagsAreConfigs: every flag config.TrainCommand writes is one of train's.
func TestTrainFlagsAreConfigs(t *testing.T) {
	train := subcommand(t, NewRootCmd(io.Discard, io.Discard), config.TrainSubcommand)
	for _, name := range []string{config.TrainFlagVariant, config.TrainFlagConfig, config.TrainFlagOut, config.TrainFlagResume, config.TrainFlagScene} {
		if train.Flags().Lookup(name) == nil {
			t.Errorf("train has no --%s", name)
		}
	}
	if f := train.Flags().ShorthandLookup(config.TrainFlagConfigShort); f == nil || f.Name != config.TrainFlagConfig {
		t.Errorf("train's -%s is not --%s", config.TrainFlagConfigShort, config.TrainFlagConfig)
	}
}
