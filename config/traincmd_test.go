package config

import (
	"reflect"
	"testing"
)

// The argument order is what sweeps record as their points' commands: it stays as it is.
func TestTrainCommandArgs(t *testing.T) {
	for _, c := range []struct {
		cmd  TrainCommand
		want []string
	}{
		{TrainCommand{}, []string{"train"}},
		{TrainCommand{Variant: "drcnn", Out: "s/runs/p", Overrides: []string{"training.seed=0", "training.threads=2"}},
			[]string{"train", "--variant", "drcnn", "--out", "s/runs/p", "training.seed=0", "training.threads=2"}},
		{TrainCommand{File: "a b.yaml", Out: "o", Scene: "x.mat", Overrides: []string{"k=v=w"}},
			[]string{"train", "-c", "a b.yaml", "--out", "o", "--scene", "x.mat", "k=v=w"}},
		{TrainCommand{Out: "o", Resume: "o/checkpoints/last"}, []string{"train", "--out", "o", "--resume", "o/checkpoints/last"}},
		{TrainCommand{Variant: "pca", Overrides: []string{"a=1", "-b=2"}}, []string{"train", "--variant", "pca", "--", "a=1", "-b=2"}},
	} {
		if got := c.cmd.Args(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%+v: Args %q, want %q", c.cmd, got, c.want)
		}
	}
}
