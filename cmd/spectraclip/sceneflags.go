package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/scene"
	"github.com/spectraclip/spectraclip/scene/scenespec"
)

// sceneFlags are the --scene options of train and compare.
type sceneFlags struct {
	cubeVar, gtVar, mask, split string
	fractions                   []float64
	block, tile                 int
}

func (f *sceneFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.cubeVar, "cube-var", "", "with --scene: the cube variable of a .mat/.npz (default: the first known pair)")
	cmd.Flags().StringVar(&f.gtVar, "gt-var", "", "with --scene: the ground-truth variable")
	cmd.Flags().StringVar(&f.mask, "mask", "", "with --scene: a separate ground-truth file (.png, .npy, .mat, one-band ENVI)")
	cmd.Flags().StringVar(&f.split, "split", "auto", "with --scene: objects (the whole scene, anomaly objects whole to train/val/test), none (zero-shot evaluation only), the tiled spatial or checkerboard for captures too large to run whole, or auto (objects up to 4 Mi pixels, spatial tiles beyond)")
	cmd.Flags().IntVar(&f.tile, "tile", 32, "with --scene and a tiled --split: tile side in pixels")
	cmd.Flags().Float64SliceVar(&f.fractions, "fractions", nil, "with --scene: train,val,test shares (default 0.5,0.25,0.25; val 0 = validate on the train pixels)")
	cmd.Flags().IntVar(&f.block, "block", scenespec.DefaultBlock, "with --scene: side of the blocks normal pixels are split by")
}

// spec builds data.scene for path; the checks are ParseSpec's.
func (f *sceneFlags) spec(path string) (scenespec.Spec, error) {
	m := map[string]any{"path": path, "cube_var": f.cubeVar, "gt_var": f.gtVar, "mask_path": f.mask, "split": f.split, "block": f.block, "tile": f.tile}
	if f.fractions != nil {
		l := make([]any, len(f.fractions))
		for i, x := range f.fractions {
			l[i] = x
		}
		m["fractions"] = l
	}
	for k, v := range m {
		if v == "" {
			delete(m, k)
		}
	}
	return scenespec.Parse(m)
}

func sceneConfig(o *trainOptions) (*config.Config, error) {
	sp, err := o.sceneFlags.spec(o.Scene)
	if err != nil {
		return nil, err
	}
	return scenespec.LoadConfig(scenespec.ConfigOptions{Variant: o.Variant, File: o.File, Overrides: o.Overrides, Environ: configEnviron(), Spec: sp})
}

// compareSceneFlags are compare's --scene options.
type compareSceneFlags struct {
	scenes []string
	seeds  []uint
	sceneFlags
}

func (f *compareSceneFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.scenes, "scene", nil, "compare RX, zero-shot and the variants on labelled scenes (repeatable), on held-out pixels")
	cmd.Flags().UintSliceVar(&f.seeds, "seeds", []uint{42}, "with --scene: seeds (split and training), e.g. 1,2,3")
	f.sceneFlags.add(cmd)
}

func runSceneCompare(g *globals, f *compareSceneFlags, out string, variants, overrides []string) error {
	o := scene.CompareOptions{Out: out, Variants: variants, Overrides: overrides, Environ: configEnviron(), Log: g.log, Progress: os.Stderr}
	for _, p := range f.scenes {
		sp, err := f.spec(p)
		if err != nil {
			return err
		}
		o.Scenes = append(o.Scenes, sp)
	}
	for _, s := range f.seeds {
		o.Seeds = append(o.Seeds, uint64(s))
	}
	c, err := scene.Compare(o)
	if err != nil {
		return err
	}
	fmt.Fprint(g.out, c.Markdown)
	return nil
}
