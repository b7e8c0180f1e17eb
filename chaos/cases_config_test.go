package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// drcnnYAML is the shipped DRCNN trainrun with one epoch, the base that trainrun cases mutate.
func drcnnYAML(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "configs", "trainrun", "drcnn_adaclip.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "max_epochs: 30") {
		t.Fatal("the DRCNN trainrun no longer says max_epochs: 30; update the corpus")
	}
	return strings.Replace(string(b), "max_epochs: 30", "max_epochs: 1", 1)
}

// runOverrides point a trainrun at the fixture data, small and on one thread; unlike
// tinyOverrides they leave max_epochs to the file.
func runOverrides(root string) []string {
	return []string{"data.root=" + root, "+pipeline.detector.image_size=32", "training.threads=1"}
}

// trainrunCase writes run.yaml (the DRCNN trainrun edited by edit) and trains it on the
// fixture data.
func trainrunCase(name string, edit func(t *testing.T, y string) string, mentions ...string) Case {
	return Case{Name: "trainrun/" + name, Mentions: mentions, Build: func(t *testing.T, e *Env) Invocation {
		fx := e.Fixtures(t)
		p := write(t, e.Dir, "run.yaml", []byte(edit(t, drcnnYAML(t))))
		args := append([]string{"train", "-c", p, "--out", filepath.Join(e.Dir, "run")}, runOverrides(fx.data)...)
		return Invocation{Args: args}
	}}
}

// sub replaces old by new in the YAML, failing when old is absent (the base changed).
func sub(old, new string) func(*testing.T, string) string {
	return func(t *testing.T, y string) string {
		if !strings.Contains(y, old) {
			t.Fatalf("the DRCNN trainrun has no %q", old)
		}
		return strings.Replace(y, old, new, 1)
	}
}

func appendYAML(text string) func(*testing.T, string) string {
	return func(_ *testing.T, y string) string { return y + "\n" + text + "\n" }
}

func trainrunCases() []Case {
	cs := []Case{
		{Name: "trainrun/control-valid", Succeed: true, Build: func(t *testing.T, e *Env) Invocation {
			fx := e.Fixtures(t)
			p := write(t, e.Dir, "run.yaml", []byte(drcnnYAML(t)))
			return Invocation{Args: append([]string{"--log-level", "error", "train", "-c", p, "--out", filepath.Join(e.Dir, "run")}, runOverrides(fx.data)...)}
		}},
		trainrunCase("invalid-yaml", appendYAML("pipeline: [unclosed"), "$run.yaml"),
		trainrunCase("tab-indentation", appendYAML("extra:\n\tkey: 1"), "$run.yaml"),
		trainrunCase("empty", func(*testing.T, string) string { return "" }, "data.root"),
		trainrunCase("unknown-top-level-key", appendYAML("colour: blue"), "colour"),
		trainrunCase("unknown-nested-key", sub("    lr: 0.01", "    lr: 0.01\n    lrr: 0.1"), "lrr"),
		trainrunCase("max-epochs-string", sub("max_epochs: 1", "max_epochs: ten"), "max_epochs"),
		trainrunCase("max-epochs-fraction", sub("max_epochs: 1", "max_epochs: 2.5"), "max_epochs"),
		trainrunCase("max-epochs-negative", sub("max_epochs: 1", "max_epochs: -1"), "max_epochs"),
		trainrunCase("optimizer-unknown", sub("name: adamw", "name: adamq"), "adamq"),
		trainrunCase("lr-negative", sub("lr: 0.01", "lr: -0.1"), "lr"),
		trainrunCase("scheduler-unknown", sub("name: reduce_on_plateau", "name: reduce_sometimes"), "reduce_sometimes"),
		trainrunCase("scheduler-mode", sub("mode: max", "mode: sideways"), "sideways"),
		trainrunCase("defaults-missing", sub("defaults: [data/lentils_synth, training/default]", "defaults: [data/lentils_synth, training/nowhere]"), "training/nowhere"),
		trainrunCase("defaults-not-a-list", sub("defaults: [data/lentils_synth, training/default]", "defaults: data/lentils_synth"), "defaults"),
		trainrunCase("node-type-unknown", sub("type: LearnableChannelMixer", "type: ImaginaryMixer"), "ImaginaryMixer"),
		trainrunCase("node-param-wrong-type", sub("leaky_relu_negative_slope: 0.1", "leaky_relu_negative_slope: steep"), "leaky_relu_negative_slope"),
		trainrunCase("reduction-scheme-mismatch", sub("reduction_scheme: [61, 16, 8, 3]", "reduction_scheme: [60, 16, 8, 3]"), "channel_mixer"),
		trainrunCase("connection-unknown-node", sub("data_node.cube -> normalizer.data", "data_node.cube -> normaliser.data"), "normaliser"),
		trainrunCase("connection-malformed", sub("data_node.cube -> normalizer.data", "data_node.cube => normalizer.data"), "=>"),
		trainrunCase("connection-unknown-port", sub("channel_mixer.rgb -> detector.rgb_image", "channel_mixer.rgb -> detector.bgr_image"), "bgr_image"),
		trainrunCase("loss-node-unknown", sub("loss_nodes: [iou_loss]", "loss_nodes: [dice_loss]"), "dice_loss"),
		trainrunCase("unfreeze-unknown", sub("unfreeze_nodes: [channel_mixer]", "unfreeze_nodes: [mixer]"), "mixer"),
		trainrunCase("variant-unknown", sub("variant: drcnn", "variant: cnn"), "cnn"),
		trainrunCase("evaluation-port-unknown", sub("scores: detector.scores", "scores: detector.nothing"), "detector.nothing"),
		trainrunCase("detector-path-missing", sub(`detector_path: ""`, `detector_path: "/nonexistent/adaclip.pt"`), "/nonexistent/adaclip.pt"),
		trainrunCase("decider-quantile-above-1", sub("quantile: 0.99", "quantile: 1.5"), "quantile"),
		trainrunCase("yaml-alias-bomb", func(*testing.T, string) string {
			// A billion-laughs document: nine levels of nine aliases.
			var b strings.Builder
			b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x]\n")
			for i := 1; i <= 9; i++ {
				b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
				for k := 0; k < 9; k++ {
					if k > 0 {
						b.WriteString(", ")
					}
					b.WriteString("*a" + string(rune('0'+i-1)))
				}
				b.WriteString("]\n")
			}
			return b.String()
		}, "$run.yaml"),
		{Name: "trainrun/detector-path-garbage", Mentions: []string{"$garbage.pt"}, Build: func(t *testing.T, e *Env) Invocation {
			fx := e.Fixtures(t)
			g := write(t, e.Dir, "garbage.pt", []byte("PK\x03\x04 this is not TorchScript"))
			p := write(t, e.Dir, "run.yaml", []byte(strings.Replace(drcnnYAML(t), `detector_path: ""`, `detector_path: "`+g+`"`, 1)))
			return Invocation{Args: append([]string{"train", "-c", p, "--out", filepath.Join(e.Dir, "run")}, runOverrides(fx.data)...)}
		}},
		{Name: "trainrun/file-missing", Mentions: []string{"$none.yaml"}, Build: func(t *testing.T, e *Env) Invocation {
			return Invocation{Args: []string{"train", "-c", filepath.Join(e.Dir, "none.yaml"), "--out", filepath.Join(e.Dir, "run")}}
		}},
		{Name: "trainrun/file-is-directory", Mentions: []string{"$conf"}, Build: func(t *testing.T, e *Env) Invocation {
			os.Mkdir(filepath.Join(e.Dir, "conf"), 0o755)
			return Invocation{Args: []string{"train", "-c", filepath.Join(e.Dir, "conf"), "--out", filepath.Join(e.Dir, "run")}}
		}},
		{Name: "trainrun/file-fifo", Mentions: []string{"$run.yaml"}, Build: func(t *testing.T, e *Env) Invocation {
			return Invocation{Args: []string{"train", "-c", mkfifo(t, filepath.Join(e.Dir, "run.yaml")), "--out", filepath.Join(e.Dir, "run")}}
		}},
	}
	return cs
}

// overrideCase trains the PCA variant on the fixture data with one extra override ("$" in it
// stands for the case directory).
func overrideCase(name, override string, mentions ...string) Case {
	return Case{Name: "override/" + name, Mentions: mentions, Build: func(t *testing.T, e *Env) Invocation {
		fx := e.Fixtures(t)
		return trainOn(e, fx.data, strings.ReplaceAll(override, "$", e.Dir+string(filepath.Separator)))
	}}
}

func overrideCases() []Case {
	return []Case{
		overrideCase("unknown-key", "training.optimizer.lrr=0.1", "training.optimizer.lrr"),
		overrideCase("no-equals", "training.optimizer.lr", "training.optimizer.lr"),
		overrideCase("empty-key", "=3", "=3"),
		overrideCase("max-epochs-string", "training.trainer.max_epochs=abc", "max_epochs"),
		overrideCase("max-epochs-fraction", "training.trainer.max_epochs=2.5", "max_epochs"),
		overrideCase("threads-negative", "training.threads=-4", "threads"),
		overrideCase("threads-100000", "training.threads=100000", "threads"),
		overrideCase("gradient-clip-negative", "training.trainer.gradient_clip_val=-1", "gradient_clip_val"),
		overrideCase("batch-size-zero", "data.batch_size=0", "batch_size"),
		overrideCase("lr-nan", "training.optimizer.lr=.nan", "lr"),
		overrideCase("lr-inf", "training.optimizer.lr=.inf", "lr"),
		overrideCase("add-unknown-key", "+training.warp_speed=9", "warp_speed"),
		overrideCase("image-size-negative", "pipeline.detector.image_size=-32", "image_size"),
		overrideCase("quantile-above-1", "pipeline.decider.quantile=1.5", "quantile"),
		overrideCase("n-components-zero", "pipeline.pca.n_components=0", "n_components"),
		overrideCase("pca-components-over-bands", "pipeline.pca.n_components=500", "n_components"),
		overrideCase("connections-garbage", "connections=[nonsense]", "nonsense"),
		overrideCase("data-root-typo", "data.root=$lentils_synht", "$lentils_synht"),
		overrideCase("device-unknown", "training.device=tpu", "tpu"),
		overrideCase("yaml-value-unclosed", "training.optimizer.betas=[0.9, 0.999", "betas"),
		overrideCase("seed-string", "training.seed=lucky", "seed"),
		overrideCase("nan-policy-bogus", "data.nan_policy=ignore", "nan_policy"),
	}
}

// envCase trains the PCA variant on the fixture data with extra environment variables.
func envCase(name string, env []string, mentions ...string) Case {
	return Case{Name: "env/" + name, Mentions: mentions, Build: func(t *testing.T, e *Env) Invocation {
		// Only the data root and detector size on the command line: an override of the same
		// key would win over the environment.
		fx := e.Fixtures(t)
		inv := Invocation{Args: []string{"train", "--variant", "pca", "--out", filepath.Join(e.Dir, "run"), "data.root=" + fx.data, "+pipeline.detector.image_size=32"}}
		inv.Env = env
		return inv
	}}
}

func envCases() []Case {
	return []Case{
		envCase("max-epochs-string", []string{"SPECTRACLIP_TRAINING__TRAINER__MAX_EPOCHS=abc"}, "SPECTRACLIP_TRAINING__TRAINER__MAX_EPOCHS"),
		envCase("threads-negative", []string{"SPECTRACLIP_TRAINING__THREADS=-4"}, "threads"),
		envCase("lr-string", []string{"SPECTRACLIP_TRAINING__OPTIMIZER__LR=fast"}, "SPECTRACLIP_TRAINING__OPTIMIZER__LR"),
		envCase("unknown-variable", []string{"SPECTRACLIP_TRAINING__OPTIMIZER__LRR=0.1"}, "SPECTRACLIP_TRAINING__OPTIMIZER__LRR"),
		envCase("unknown-top-level", []string{"SPECTRACLIP_COLOUR=blue"}, "SPECTRACLIP_COLOUR"),
		envCase("batch-size-zero", []string{"SPECTRACLIP_DATA__BATCH_SIZE=0"}, "batch_size"),
		envCase("max-cube-bytes-malformed", []string{"SPECTRACLIP_MAX_CUBE_BYTES=lots"}, "SPECTRACLIP_MAX_CUBE_BYTES"),
		envCase("max-cube-bytes-tiny", []string{"SPECTRACLIP_MAX_CUBE_BYTES=1KiB"}, "cube memory limit", "frame_000"),
		{Name: "env/detect-max-cube-bytes-malformed", Mentions: []string{"SPECTRACLIP_MAX_CUBE_BYTES"}, Build: func(t *testing.T, e *Env) Invocation {
			inv := detect(write(t, e.Dir, "cube.npy", npyBytes("<f4", cubeShape, f32le(randF32(cubeH*cubeW*cubeC)))))
			inv.Env = []string{"SPECTRACLIP_MAX_CUBE_BYTES=-5"}
			return inv
		}},
	}
}

// cli is a case that runs a command line built from the case directory.
func cli(name string, args func(t *testing.T, e *Env) []string, mentions ...string) Case {
	return Case{Name: "cli/" + name, Mentions: mentions, Build: func(t *testing.T, e *Env) Invocation {
		return Invocation{Args: args(t, e)}
	}}
}

func fixed(args ...string) func(*testing.T, *Env) []string {
	return func(*testing.T, *Env) []string { return args }
}

func cliCases() []Case {
	return []Case{
		cli("unknown-command", fixed("trian"), "trian"),
		cli("unknown-flag", fixed("train", "--epochs", "3"), "--epochs"),
		cli("log-level-bogus", fixed("--log-level", "loud", "version"), "--log-level"),
		cli("log-format-bogus", fixed("--log-format", "xml", "version"), "--log-format"),
		cli("version-extra-arg", fixed("version", "please"), "please"),
		cli("train-variant-unknown", func(t *testing.T, e *Env) []string {
			return []string{"train", "--variant", "cnn", "--out", filepath.Join(e.Dir, "run")}
		}, "cnn"),
		cli("train-resume-missing", func(t *testing.T, e *Env) []string {
			fx := e.Fixtures(t)
			return append([]string{"train", "--variant", "pca", "--out", filepath.Join(e.Dir, "run"), "--resume", filepath.Join(e.Dir, "run", "checkpoints", "last")}, tinyOverrides(fx.data)...)
		}, "--resume"),
		cli("train-out-existing-run", func(t *testing.T, e *Env) []string {
			fx := e.Fixtures(t)
			run := e.CopyRun(t)
			return append([]string{"train", "--variant", "pca", "--out", run}, tinyOverrides(fx.data)...)
		}, "$run"),
		cli("train-out-under-a-file", func(t *testing.T, e *Env) []string {
			fx := e.Fixtures(t)
			write(t, e.Dir, "afile", []byte("x"))
			return append([]string{"train", "--variant", "pca", "--out", filepath.Join(e.Dir, "afile", "run")}, tinyOverrides(fx.data)...)
		}, "$afile"),
		cli("eval-no-run-flag", fixed("eval"), `"run"`),
		cli("eval-run-missing", func(t *testing.T, e *Env) []string { return []string{"eval", "--run", filepath.Join(e.Dir, "nothing")} }, "$nothing"),
		cli("eval-run-is-file", func(t *testing.T, e *Env) []string {
			return []string{"eval", "--run", write(t, e.Dir, "afile", []byte("x"))}
		}, "$afile"),
		cli("eval-run-empty-dir", func(t *testing.T, e *Env) []string {
			os.Mkdir(filepath.Join(e.Dir, "empty"), 0o755)
			return []string{"eval", "--run", filepath.Join(e.Dir, "empty")}
		}, "$empty"),
		cli("eval-split-bogus", func(t *testing.T, e *Env) []string {
			return []string{"eval", "--run", e.CopyRun(t), "--split", "holdout"}
		}, "holdout"),
		cli("eval-weights-truncated", func(t *testing.T, e *Env) []string {
			run := e.CopyRun(t)
			os.Truncate(filepath.Join(run, "pipeline.weights.pt"), 100)
			return []string{"eval", "--run", run}
		}, "pipeline.weights.pt"),
		cli("eval-weights-garbage", func(t *testing.T, e *Env) []string {
			run := e.CopyRun(t)
			os.WriteFile(filepath.Join(run, "pipeline.weights.pt"), []byte("not a torch archive"), 0o644)
			return []string{"eval", "--run", run}
		}, "pipeline.weights.pt"),
		cli("eval-weights-fifo", func(t *testing.T, e *Env) []string {
			run := e.CopyRun(t)
			os.Remove(filepath.Join(run, "pipeline.weights.pt"))
			mkfifo(t, filepath.Join(run, "pipeline.weights.pt"))
			return []string{"eval", "--run", run}
		}, "pipeline.weights.pt"),
		cli("eval-config-corrupt", func(t *testing.T, e *Env) []string {
			run := e.CopyRun(t)
			os.WriteFile(filepath.Join(run, "config.yaml"), []byte("pipeline: [\n"), 0o644)
			return []string{"eval", "--run", run}
		}, "config.yaml"),
		cli("eval-data-gone", func(t *testing.T, e *Env) []string {
			run := e.CopyRun(t)
			cfg := filepath.Join(run, "config.yaml")
			b, _ := os.ReadFile(cfg)
			os.WriteFile(cfg, []byte(strings.ReplaceAll(string(b), e.Fixtures(t).data, filepath.Join(e.Dir, "gone"))), 0o644)
			return []string{"eval", "--run", run}
		}, "$gone"),
		cli("calibrate-run-missing", func(t *testing.T, e *Env) []string {
			return []string{"calibrate", "--run", filepath.Join(e.Dir, "nothing")}
		}, "$nothing"),
		cli("calibrate-run-empty-dir", func(t *testing.T, e *Env) []string {
			os.Mkdir(filepath.Join(e.Dir, "empty"), 0o755)
			return []string{"calibrate", "--run", filepath.Join(e.Dir, "empty")}
		}, "$empty"),
		cli("calibrate-weights-garbage", func(t *testing.T, e *Env) []string {
			run := e.CopyRun(t)
			os.WriteFile(filepath.Join(run, "pipeline.weights.pt"), []byte("not a torch archive"), 0o644)
			return []string{"calibrate", "--run", run}
		}, "pipeline.weights.pt"),
		cli("infer-no-out", func(t *testing.T, e *Env) []string {
			return []string{"infer", "--run", filepath.Join(e.Dir, "run"), "--input", filepath.Join(e.Dir, "x.hdr")}
		}, "out"),
		cli("infer-run-missing", func(t *testing.T, e *Env) []string {
			return []string{"infer", "--run", filepath.Join(e.Dir, "nothing"), "--input", e.Fixtures(t).cubeHdr, "--out", filepath.Join(e.Dir, "out")}
		}, "$nothing"),
		cli("infer-input-missing", func(t *testing.T, e *Env) []string {
			return []string{"infer", "--run", e.CopyRun(t), "--input", filepath.Join(e.Dir, "nothing.hdr"), "--out", filepath.Join(e.Dir, "out")}
		}, "$nothing.hdr"),
		cli("infer-input-empty-dir", func(t *testing.T, e *Env) []string {
			os.Mkdir(filepath.Join(e.Dir, "in"), 0o755)
			return []string{"infer", "--run", e.CopyRun(t), "--input", filepath.Join(e.Dir, "in"), "--out", filepath.Join(e.Dir, "out")}
		}, "$in"),
		cli("infer-out-is-file", func(t *testing.T, e *Env) []string {
			return []string{"infer", "--run", e.CopyRun(t), "--input", e.Fixtures(t).cubeHdr, "--out", write(t, e.Dir, "out", []byte("x"))}
		}, "$out"),
		cli("infer-input-txt", func(t *testing.T, e *Env) []string {
			return []string{"infer", "--run", e.CopyRun(t), "--input", write(t, e.Dir, "notes.txt", []byte("hello")), "--out", filepath.Join(e.Dir, "out")}
		}, "$notes.txt"),
		cli("detect-detector-unknown", func(t *testing.T, e *Env) []string {
			return []string{"detect", "--input", e.Fixtures(t).cubeHdr, "--detector", "lrx"}
		}, "lrx"),
		cli("detect-no-input", fixed("detect"), "input"),
		cli("detect-input-directory", func(t *testing.T, e *Env) []string {
			os.Mkdir(filepath.Join(e.Dir, "scene"), 0o755)
			return []string{"detect", "--input", filepath.Join(e.Dir, "scene")}
		}, "$scene"),
		cli("detect-input-txt", func(t *testing.T, e *Env) []string {
			return []string{"detect", "--input", write(t, e.Dir, "notes.txt", []byte("hello"))}
		}, "$notes.txt"),
		cli("synth-frames-zero", func(t *testing.T, e *Env) []string {
			return []string{"synth", "--out", filepath.Join(e.Dir, "d"), "--frames", "0"}
		}, "frames"),
		cli("synth-frames-negative", func(t *testing.T, e *Env) []string {
			return []string{"synth", "--out", filepath.Join(e.Dir, "d"), "--frames", "-1"}
		}, "frames"),
		cli("synth-height-zero", func(t *testing.T, e *Env) []string {
			return []string{"synth", "--out", filepath.Join(e.Dir, "d"), "--height", "0"}
		}, "height"),
		cli("synth-size-huge", func(t *testing.T, e *Env) []string {
			return []string{"synth", "--out", filepath.Join(e.Dir, "d"), "--height", "100000", "--width", "100000"}
		}, "100000"),
		cli("synth-bands-one", func(t *testing.T, e *Env) []string {
			return []string{"synth", "--out", filepath.Join(e.Dir, "d"), "--bands", "1"}
		}, "bands"),
		cli("synth-stone-rate-2", func(t *testing.T, e *Env) []string {
			return []string{"synth", "--out", filepath.Join(e.Dir, "d"), "--stone-rate", "2"}
		}, "stone"),
		cli("synth-seed-string", func(t *testing.T, e *Env) []string {
			return []string{"synth", "--out", filepath.Join(e.Dir, "d"), "--seed", "lucky"}
		}, "--seed"),
		cli("synth-out-is-file", func(t *testing.T, e *Env) []string {
			return []string{"synth", "--out", write(t, e.Dir, "d", []byte("x")), "--height", "24", "--width", "24"}
		}, "$d"),
		cli("synth-out-nonempty", func(t *testing.T, e *Env) []string {
			write(t, e.Dir, "d/keep.txt", []byte("mine"))
			return []string{"synth", "--out", filepath.Join(e.Dir, "d"), "--height", "24", "--width", "24"}
		}, "$d"),
		cli("export-detector-not-builtin", func(t *testing.T, e *Env) []string {
			return []string{"export-detector", "--out", filepath.Join(e.Dir, "det.pt")}
		}, "--builtin"),
		cli("export-detector-size-negative", func(t *testing.T, e *Env) []string {
			return []string{"export-detector", "--builtin", "--image-size", "-5", "--out", filepath.Join(e.Dir, "det.pt")}
		}, "image"),
		cli("export-detector-out-missing-dir", func(t *testing.T, e *Env) []string {
			return []string{"export-detector", "--builtin", "--out", filepath.Join(e.Dir, "no", "such", "det.pt")}
		}, "$no/such/det.pt"),
		cli("graph-file-missing", func(t *testing.T, e *Env) []string { return []string{"graph", filepath.Join(e.Dir, "none.yaml")} }, "$none.yaml"),
		cli("graph-variant-unknown", fixed("graph", "--variant", "cnn"), "cnn"),
		cli("graph-dot-missing-dir", func(t *testing.T, e *Env) []string {
			return []string{"graph", "--variant", "pca", "--dot", filepath.Join(e.Dir, "no", "g.dot")}
		}, "$no/g.dot"),
		cli("plugins-manifest-missing", func(t *testing.T, e *Env) []string {
			return []string{"plugins", "load", "--manifest", filepath.Join(e.Dir, "plugins.yaml")}
		}, "$plugins.yaml"),
		cli("plugins-manifest-invalid", func(t *testing.T, e *Env) []string {
			return []string{"plugins", "load", "--manifest", write(t, e.Dir, "plugins.yaml", []byte("plugins: [\n"))}
		}, "$plugins.yaml"),
		cli("plugins-path-missing", func(t *testing.T, e *Env) []string {
			return []string{"plugins", "load", "--manifest", write(t, e.Dir, "plugins.yaml", []byte("plugins:\n  mine:\n    path: "+filepath.Join(e.Dir, "nowhere")+"\n"))}
		}, "nowhere"),
		cli("plugins-clear-cache-traversal", fixed("plugins", "clear-cache", "--name", "../../etc"), "../../etc"),
		cli("compare-variant-unknown", func(t *testing.T, e *Env) []string {
			return append([]string{"compare", "--out", filepath.Join(e.Dir, "cmp"), "--variants", "pca,cnn"}, tinyOverrides(e.Fixtures(t).data)...)
		}, "cnn"),
		cli("bench-unknown-flag", fixed("bench", "--turbo"), "--turbo"),
		cli("serve-run-missing", func(t *testing.T, e *Env) []string {
			return []string{"serve", "--run", filepath.Join(e.Dir, "nothing"), "--addr", "127.0.0.1:0", "--grpc-addr", ""}
		}, "$nothing"),
		cli("serve-addr-bogus", func(t *testing.T, e *Env) []string {
			return []string{"serve", "--run", e.CopyRun(t), "--addr", "notanaddress", "--grpc-addr", ""}
		}, "--addr", "notanaddress"),
		cli("score-server-scheme", func(t *testing.T, e *Env) []string {
			return []string{"score", "--server", "ftp://localhost", e.Fixtures(t).cubeHdr}
		}, "ftp"),
		cli("score-server-refused", func(t *testing.T, e *Env) []string {
			return []string{"score", "--server", "http://127.0.0.1:1", e.Fixtures(t).cubeHdr}
		}, "127.0.0.1:1"),
		cli("score-input-missing", func(t *testing.T, e *Env) []string {
			return []string{"score", "--server", "http://127.0.0.1:1", filepath.Join(e.Dir, "nothing.npy")}
		}, "$nothing.npy"),
		cli("sweep-no-out", fixed("sweep", "--variant", "pca"), `"out"`),
		cli("sweep-file-missing", func(t *testing.T, e *Env) []string {
			return []string{"sweep", "-c", filepath.Join(e.Dir, "none.yaml"), "--out", filepath.Join(e.Dir, "sw")}
		}, "$none.yaml"),
		cli("sweep-variant-unknown", func(t *testing.T, e *Env) []string {
			return []string{"sweep", "--variant", "cnn", "--out", filepath.Join(e.Dir, "sw")}
		}, "cnn"),
		cli("sweep-seeds-bogus", func(t *testing.T, e *Env) []string {
			return []string{"sweep", "--variant", "pca", "--seeds", "abc", "--out", filepath.Join(e.Dir, "sw")}
		}, "--seeds"),
		cli("train-scene-missing", func(t *testing.T, e *Env) []string {
			return []string{"train", "--scene", filepath.Join(e.Dir, "none.mat"), "--out", filepath.Join(e.Dir, "run")}
		}, "$none.mat"),
		cli("train-scene-zlib-bomb", func(t *testing.T, e *Env) []string {
			var mat []byte
			for _, c := range matCases() {
				if c.Name == "mat/zlib-bomb" {
					inv := c.Build(t, e)
					mat, _ = os.ReadFile(inv.Args[2])
					os.Remove(inv.Args[2])
				}
			}
			p := write(t, e.Dir, "bomb.mat", mat)
			return []string{"train", "--scene", p, "--out", filepath.Join(e.Dir, "run")}
		}, "$bomb.mat", "cube memory limit"),
	}
}
