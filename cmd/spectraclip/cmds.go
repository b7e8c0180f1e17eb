package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/spectraclip/spectraclip/compare"
	"github.com/spectraclip/spectraclip/config"
	"github.com/spectraclip/spectraclip/dataset"
	"github.com/spectraclip/spectraclip/infer"
	"github.com/spectraclip/spectraclip/nodes"
	"github.com/spectraclip/spectraclip/nodes/detect"
	"github.com/spectraclip/spectraclip/run"
	"github.com/spectraclip/spectraclip/scene"
	"github.com/spectraclip/spectraclip/torch"
	"github.com/spectraclip/spectraclip/trainer"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the program version, the LibTorch it runs against, its BLAS and the devices it sees",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(g.out, "spectraclip %s\n", version)
			fmt.Fprintf(g.out, "libtorch %s\n", torch.Version())
			fmt.Fprintf(g.out, "build %s\n", torch.BuildInfo())
			if why := torch.GlooUnavailable(); why != "" {
				fmt.Fprintf(g.out, "gloo unavailable: %s\n", why)
			}
			fmt.Fprintf(g.out, "threads %d\n", torch.NumThreads())
			b := torch.BLAS()
			fmt.Fprintf(g.out, "blas %s %s\n", b.Kind, b.Path)
			if w := b.Warning(); w != "" {
				g.log.Warn(w)
			}
			fmt.Fprintf(g.out, "cuda devices %d\n", torch.CUDADeviceCount())
			fmt.Fprintf(g.out, "devices cpu")
			for i := 0; i < torch.CUDADeviceCount(); i++ {
				fmt.Fprintf(g.out, " cuda:%d", i)
			}
			fmt.Fprintln(g.out)
			return nil
		},
	}
}

type trainOptions struct {
	// the flags and overrides that the sweep's points are given too
	config.TrainCommand
	sceneFlags
	dist distFlags
}

func newTrainCmd(g *globals) *cobra.Command {
	return trainCmd(func(o *trainOptions) error { return runTrain(g, o) })
}

// trainCmd builds the train command; run gets what it parsed.
func trainCmd(run func(o *trainOptions) error) *cobra.Command {
	o := &trainOptions{}
	cmd := &cobra.Command{
		Use:   config.TrainSubcommand + " [key=value ...]",
		Short: "train one variant (pca, drcnn, concrete) or a trainrun file",
		Long: "train runs a trainrun: statistical fit, gradient epochs, evaluation and reports, into\n" +
			"outputs/<name>/<timestamp>/ (or --out). Trailing key=value arguments override config keys\n" +
			"(e.g. training.optimizer.lr=3e-4 data.batch_size=2); SPECTRACLIP_TRAINING__OPTIMIZER__LR=...\n" +
			"in the environment does the same.",
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Overrides = args
			return run(o)
		},
	}
	bindTrainCommand(cmd, &o.TrainCommand)
	o.sceneFlags.add(cmd)
	o.dist.add(cmd)
	return cmd
}

// bindTrainCommand defines the flags of config.TrainCommand on cmd, under config's names,
// parsed into tc's fields (the overrides are the command's arguments: its RunE sets them).
func bindTrainCommand(cmd *cobra.Command, tc *config.TrainCommand) {
	f := cmd.Flags()
	f.StringVar(&tc.Variant, config.TrainFlagVariant, "", "pca, drcnn or concrete")
	f.StringVarP(&tc.File, config.TrainFlagConfig, config.TrainFlagConfigShort, "", "a trainrun YAML file")
	f.StringVar(&tc.Out, config.TrainFlagOut, "", "run directory (default outputs/<name>/<timestamp>)")
	f.StringVar(&tc.Resume, config.TrainFlagResume, "", "resume a run from its checkpoint, e.g. RUN/checkpoints/last (the run's own config.yaml is used; overrides may only add epochs)")
	f.StringVar(&tc.Scene, config.TrainFlagScene, "", "train on one labelled scene (ENVI, .mat, .npy, .npz) split by pixels, with the scene defaults")
}

func runTrain(g *globals, o *trainOptions) error {
	if launched, err := launchWorkers(g, &o.dist); launched {
		return err
	}
	var cfg *config.Config
	var changes []config.ConfigChange
	var err error
	if o.Resume != "" {
		// a resumed run keeps its own config.yaml; only safe changes are accepted
		cfg, changes, err = run.ResumeConfig(o.Resume, o.Out, config.LoadOptions{Variant: o.Variant, File: o.File, Overrides: o.Overrides, Environ: configEnviron()})
	} else {
		if o.Variant == "" && o.File == "" {
			o.Variant = "drcnn"
		}
		if o.Scene != "" {
			cfg, err = sceneConfig(o)
		} else {
			cfg, _, err = config.LoadConfig(config.LoadOptions{Variant: o.Variant, File: o.File, Overrides: o.Overrides, Environ: configEnviron()})
		}
	}
	if err != nil {
		return err
	}
	pl, grp, err := joinDist(g, cfg, &o.dist)
	if err != nil {
		return err
	}
	topts := trainer.Options{OutDir: o.Out, Log: g.log, Progress: os.Stderr, Resume: o.Resume, ResumeChanges: changes, Data: scene.Source, Placement: &pl}
	if grp != nil {
		topts.Dist = grp
	}
	res, err := trainer.Train(cfg, topts)
	if grp != nil {
		if err != nil {
			grp.Abort()
		} else if cerr := grp.Close(); cerr != nil {
			err = cerr
		}
	}
	if err != nil {
		return err
	}
	if grp != nil && grp.Rank() != 0 {
		return nil // rank 0 reports
	}
	fmt.Fprintf(g.out, "run: %s\n", res.Dir)
	fmt.Fprintf(g.out, "test: iou %s  f1 %s  AP %s  AUROC %s  (detector %s, %.1f FPS)\n",
		config.FormatMetric(res.Test["iou"]), config.FormatMetric(res.Test["f1_score"]), config.FormatMetric(res.Test["average_precision"]),
		config.FormatMetric(res.Test["auroc"]), res.Detector, res.InferenceFPS)
	return nil
}

func newEvalCmd(g *globals) *cobra.Command {
	var run, split string
	cmd := &cobra.Command{
		Use:   "eval --run DIR",
		Short: "evaluate a finished run's saved pipeline on its val or test split",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := trainer.EvalRun(run, split, trainer.ReopenOptions{Data: scene.Source, Log: g.log})
			if err != nil {
				return err
			}
			return printJSON(g, m)
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run directory")
	cmd.Flags().StringVar(&split, "split", "test", "val or test")
	_ = cmd.MarkFlagRequired("run")
	return cmd
}

func newInferCmd(g *globals) *cobra.Command {
	var run, input, out, nanPolicy, outputs string
	var threads, batch int
	cmd := &cobra.Command{
		Use:   "infer --run DIR --input FILE|DIR --out DIR",
		Short: "write anomaly maps and decisions (PNG, .npy, JSON) for ENVI cubes or a dataset",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			outs, err := infer.ParseOutputs(outputs)
			if err != nil {
				return err
			}
			sum, err := infer.Run(run, input, out, infer.Options{NaNPolicy: nanPolicy, Outputs: outs, Threads: threads, Batch: batch, Log: g.log})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "wrote %d frames to %s\n", sum.Frames, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run directory")
	cmd.Flags().StringVar(&input, "input", "", "an ENVI header, a dataset directory or a folder of ENVI headers")
	cmd.Flags().StringVar(&out, "out", "", "output directory")
	cmd.Flags().StringVar(&nanPolicy, "nan-policy", "", "NaN/Inf in an input: error (default; a dataset directory's own nan_policy applies) or zero")
	cmd.Flags().StringVar(&outputs, "outputs", infer.AllOutputs.String(), "what to write, comma-separated: npy (scores and decisions as (H, W) arrays), png (heat map and decisions images), json (results.json)")
	cmd.Flags().IntVar(&threads, "threads", 0, fmt.Sprintf("LibTorch threads, at most %d (0: the run's training.threads)", config.MaxThreads()))
	cmd.Flags().IntVar(&batch, "batch", 1, fmt.Sprintf("frames scored together (consecutive frames of the same size), 1..%d", config.MaxBatchSize))
	for _, f := range []string{"run", "input", "out"} {
		_ = cmd.MarkFlagRequired(f)
	}
	return cmd
}

func newCompareCmd(g *globals) *cobra.Command {
	var out string
	var variants []string
	sf := &compareSceneFlags{}
	cmd := &cobra.Command{
		Use:   "compare [key=value ...]",
		Short: "train the three variants on the same data and seed and write comparison.json/.md",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(sf.scenes) > 0 {
				return runSceneCompare(g, sf, out, variants, args)
			}
			c, err := compare.Run(compare.Options{Out: out, Variants: variants, Overrides: args, Log: g.log, Environ: configEnviron()})
			if err != nil {
				return err
			}
			fmt.Fprint(g.out, c.Markdown)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output directory (default outputs/compare/<timestamp>)")
	cmd.Flags().StringSliceVar(&variants, "variants", config.VariantNames, "variants to compare")
	sf.add(cmd)
	return cmd
}

func newCalibrateCmd(g *globals) *cobra.Command {
	var run string
	cmd := &cobra.Command{
		Use:   "calibrate --run DIR",
		Short: "find F1-optimal decision thresholds on the validation split",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := trainer.Calibrate(run, trainer.ReopenOptions{Data: scene.Source, Log: g.log})
			if err != nil {
				return err
			}
			return printJSON(g, c)
		},
	}
	cmd.Flags().StringVar(&run, "run", "", "run directory")
	_ = cmd.MarkFlagRequired("run")
	return cmd
}

func newSynthCmd(g *globals) *cobra.Command {
	cfg := dataset.DefaultSynthConfig()
	var out string
	cmd := &cobra.Command{
		Use:   "synth --out DIR",
		Short: "generate the synthetic Lentils dataset (ENVI cubes + COCO + dataset.yaml)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := dataset.GenerateSynthetic(out, cfg); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "wrote %d frames of %dx%dx%d to %s\n", cfg.Frames, cfg.Height, cfg.Width, cfg.Bands, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "data/lentils_synth", "output directory")
	cmd.Flags().IntVar(&cfg.Frames, "frames", cfg.Frames, fmt.Sprintf("number of frames, 1..%d", dataset.MaxSynthFrames))
	cmd.Flags().IntVar(&cfg.Height, "height", cfg.Height, "frame height")
	cmd.Flags().IntVar(&cfg.Width, "width", cfg.Width, "frame width")
	cmd.Flags().Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed")
	cmd.Flags().Float64Var(&cfg.StoneRate, "stone-rate", cfg.StoneRate, "probability that an object is a stone")
	cmd.Flags().IntVar(&cfg.Bands, "bands", cfg.Bands, "number of bands")
	return cmd
}

func newDetectCmd(g *globals) *cobra.Command {
	var input, det, cubeVar, gtVar string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "detect --input FILE --detector rx",
		Short: "run a classical detector on a whole scene (.mat, ENVI) and print the pixel ROC AUC",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if det != "rx" {
				return fmt.Errorf("--detector %q (allowed: rx)", det)
			}
			r, err := scene.Detect(input, cubeVar, gtVar)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(g, r)
			}
			fmt.Fprintf(g.out, "%s: %dx%dx%d, detector rx", r.Input, r.H, r.W, r.C)
			if r.HasTruth {
				if r.AUROCNote != "" {
					fmt.Fprintf(g.out, ", %d anomaly pixels, pixel ROC AUC %s", r.Anomalies, r.AUROCNote)
				} else {
					fmt.Fprintf(g.out, ", %d anomaly pixels, pixel ROC AUC %.4f", r.Anomalies, r.AUROC)
				}
			}
			fmt.Fprintln(g.out)
			return nil
		},
	}
	cmd.Flags().StringVar(&input, "input", "", "a MATLAB v5 .mat scene or an ENVI header")
	cmd.Flags().StringVar(&det, "detector", "rx", "detector: rx")
	cmd.Flags().StringVar(&cubeVar, "cube-var", "", "name of the cube variable in a .mat file (default: found by name)")
	cmd.Flags().StringVar(&gtVar, "gt-var", "", "name of the ground-truth variable in a .mat file")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = cmd.MarkFlagRequired("input")
	return cmd
}

func newExportDetectorCmd(g *globals) *cobra.Command {
	var out string
	var builtin, aoti bool
	var size int
	var co detect.CompileOptions
	cmd := &cobra.Command{
		Use:   "export-detector --builtin [--aoti] --out FILE",
		Short: "write the built-in zero-shot detector as TorchScript (no Python, no download), or with --aoti as a compiled AOTInductor package (through Python with torch 2.6+)",
		Long: "export-detector --builtin writes the built-in detector as TorchScript. With --aoti it writes the same detector as an\n" +
			"AOTInductor package (.pt2) for --device, compiled by the Python exporter this binary carries (scripts/export_adaclip.py\n" +
			"--aoti --builtin-from), run with --python or $" + detect.EnvPython + " (torch 2.6 or newer, the version of the LibTorch\n" +
			"that will run it). Set it as the detector's compiled_path (pipeline.detector.compiled_path=FILE): it then scores\n" +
			"wherever no gradient flows (eval, infer, serve, bench). AdaCLIP itself: scripts/export_adaclip.py --aoti.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !builtin {
				return fmt.Errorf("only --builtin can be exported here; export AdaCLIP with scripts/export_adaclip.py")
			}
			if cmd.Flags().Changed("image-size") && (size < 8 || size > detect.MaxImageSize) {
				return fmt.Errorf("--image-size %d: the detector's input size must be in 8..%d pixels (default 224)", size, detect.MaxImageSize)
			}
			if !aoti {
				for _, f := range []string{"device", "max-batch", "half", "python"} {
					if cmd.Flags().Changed(f) {
						return fmt.Errorf("--%s: only with --aoti", f)
					}
				}
			}
			if aoti {
				if !cmd.Flags().Changed("out") {
					out = "builtin_detector.pt2"
				}
				co.Out, co.ImageSize, co.Log = out, size, g.errOut
				if err := detect.CompileBuiltin(co); err != nil {
					return err
				}
				fmt.Fprintf(g.out, "wrote %s\n", out)
				return nil
			}
			opts := detect.BuiltinOptions{}
			if size > 0 {
				opts.ImageSize = size
			}
			if err := detect.WriteBuiltin(out, opts); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "wrote %s\n", out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "builtin_detector.pt", "output file (with --aoti: builtin_detector.pt2)")
	f.BoolVar(&builtin, "builtin", false, "export the built-in detector")
	f.IntVar(&size, "image-size", 0, fmt.Sprintf("the detector's input size, 8..%d (default 224)", detect.MaxImageSize))
	f.BoolVar(&aoti, "aoti", false, "write a compiled AOTInductor package (.pt2) through Python instead of TorchScript")
	f.StringVar(&co.Device, "device", "cpu", "with --aoti: the device kind the package runs on, cpu or cuda")
	f.IntVar(&co.MaxBatch, "max-batch", 16, "with --aoti: the largest batch the package takes, 1..16 (larger batches run in chunks)")
	f.BoolVar(&co.Half, "half", false, "with --aoti --device cuda: a float16 package (for use_half_precision)")
	f.StringVar(&co.Python, "python", "", "with --aoti: the Python with torch 2.6+ (default $"+detect.EnvPython+", else python3)")
	return cmd
}

func newGraphCmd(g *globals) *cobra.Command {
	var dot, variant string
	cmd := &cobra.Command{
		Use:   "graph [CONFIG] [--variant V] [--dot FILE]",
		Short: "print a trainrun's pipeline graph, or write it as Graphviz DOT",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lo := config.LoadOptions{Variant: variant}
			if len(args) == 1 {
				lo = config.LoadOptions{File: args[0]}
			} else if variant == "" {
				lo.Variant = "drcnn"
			}
			cfg, _, err := config.LoadConfig(lo)
			if err != nil {
				return err
			}
			p, err := run.BuildPipeline(cfg, nodes.NewRegistry(), nil)
			if err != nil {
				return err
			}
			defer p.Close()
			if dot != "" {
				return os.WriteFile(dot, []byte(p.DOT()), 0o644)
			}
			fmt.Fprint(g.out, p.Describe())
			return nil
		},
	}
	cmd.Flags().StringVar(&dot, "dot", "", "write Graphviz DOT to this file")
	cmd.Flags().StringVar(&variant, "variant", "", "a shipped variant instead of a file")
	return cmd
}

func newPluginsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "plugins", Short: "load, list and clear node plugins"}
	var manifest string
	load := &cobra.Command{
		Use:   "load --manifest FILE",
		Short: "load the plugins of a manifest (plugins: {name: {repo, tag} | {path}}) and list their nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			reg := nodes.NewRegistry()
			if err := reg.LoadPluginManifest(manifest); err != nil {
				return err
			}
			for _, p := range reg.Plugins() {
				fmt.Fprintf(g.out, "%s\t%s\t%s\t%s\n", p.Name, p.Source, p.Tag, strings.Join(p.Provides, ","))
			}
			return nil
		},
	}
	load.Flags().StringVar(&manifest, "manifest", "", "plugin manifest YAML")
	_ = load.MarkFlagRequired("manifest")
	list := &cobra.Command{
		Use:   "list",
		Short: "list the node types (built-in, and from --manifest when given)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			reg := nodes.NewRegistry()
			if manifest != "" {
				if err := reg.LoadPluginManifest(manifest); err != nil {
					return err
				}
			}
			for _, t := range reg.Types() {
				origin := "built-in"
				if t.Plugin != "" {
					origin = "plugin " + t.Plugin
				}
				fmt.Fprintf(g.out, "%-28s %-10s %s\n", t.Name, origin, strings.Join(t.Aliases, ", "))
			}
			return nil
		},
	}
	list.Flags().StringVar(&manifest, "manifest", "", "also load this plugin manifest")
	var name string
	clear := &cobra.Command{
		Use:   "clear-cache [--name NAME]",
		Short: "delete cached plugin checkouts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return nodes.NewRegistry().ClearPluginCache(name)
		},
	}
	clear.Flags().StringVar(&name, "name", "", "only this plugin")
	cmd.AddCommand(load, list, clear)
	return cmd
}

// configEnviron is the environment that config loading sees: the test hooks
// (SPECTRACLIP_TEST_*) are not config keys.
func configEnviron() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SPECTRACLIP_TEST_") {
			out = append(out, kv)
		}
	}
	return out
}

func printJSON(g *globals, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(g.out, string(b))
	return nil
}
