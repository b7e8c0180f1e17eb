"""Tests of scripts/export_adaclip.py and scripts/adaclip_model.py.

Run from the repository root:  /usr/bin/python3 -m unittest scripts/test_export_adaclip.py

Every comparison is against something computed independently of the code
under test (a float64 numpy bicubic, a closed-form parameter count, hashlib
over the written file, a fresh eager model, the source weights) on seeded,
non-zero random inputs, with the tolerance stated at the assertion.
"""

import contextlib
import hashlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import adaclip_model as am  # noqa: E402
import export_adaclip as ex  # noqa: E402

DOC = os.path.join(os.path.dirname(HERE), "docs", "adaclip-export.md")


def run_cli(argv):
    """run_cli runs export_adaclip.main in-process; returns (rc, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = ex.main(argv)
        except SystemExit as e:  # argparse usage errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


def images(seed, batch, size, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g).to(dtype)


def tiny_model(seed, prompt="lentils", prompt_set="adaclip"):
    cfg = am.TINY_CONFIG
    normal, abnormal = am.build_sentences(prompt, prompt_set)
    tokens = torch.tensor(am.stand_in_tokenize(normal + abnormal, cfg.context_length, cfg.vocab_size))
    m = am.AdaCLIP(cfg, tokens, len(normal))
    m.init_random(seed)
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def np_bicubic_matrix(n_in, n_out):
    """np_bicubic_matrix is the 1-D resampling matrix of bicubic convolution
    (Keys, a = -0.75), half-pixel centres, clamped borders, in float64."""
    a = -0.75

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = (i + 0.5) * n_in / n_out - 0.5
        x0 = math.floor(src)
        t = src - x0
        for k, w in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t))):
            m[i, min(max(x0 + k, 0), n_in - 1)] += w
    return m


class TinyExportTest(unittest.TestCase):
    """One --tiny export (plus plugin folder) shared by the round-trip tests."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = os.path.join(cls.tmp.name, "tiny.pt")
        cls.plugin = os.path.join(cls.tmp.name, "plugin")
        cls.argv = ["--tiny", "--prompt", "lentils", "--seed", "3", "--out", cls.out,
                    "--plugin-dir", cls.plugin, "--plugin-name", "adaclip_tiny"]
        rc, stdout, stderr = run_cli(cls.argv)
        if rc != 0:
            raise AssertionError(f"tiny export failed (rc {rc}): {stderr}")
        cls.summary = json.loads(stdout)
        cls.loaded = torch.jit.load(cls.out)
        cls.loaded.eval()
        # The eager reference is rebuilt from scratch by the same options.
        cls.eager, cls.meta, _ = ex.build_model(ex.parse_args(cls.argv))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_saved_module_equals_eager_on_fresh_inputs(self):
        for batch in (1, 2, 4):
            x = images(77 + batch, batch, 112)
            with torch.no_grad():
                got, want = self.loaded(x), self.eager(x)
            for g, w in zip(got, want):
                self.assertLessEqual((g - w).abs().max().item(), 1e-5, f"batch {batch}")

    def test_output_shapes_ranges_and_spread(self):
        for batch in (1, 3):
            with torch.no_grad():
                pixel, image = self.loaded(images(11 + batch, batch, 112))
            self.assertEqual(list(pixel.shape), [batch, 112, 112])
            self.assertEqual(list(image.shape), [batch])
            self.assertEqual(pixel.dtype, torch.float32)
            for t in (pixel, image):
                self.assertTrue(torch.isfinite(t).all())
                self.assertGreaterEqual(t.min().item(), 0.0)
                self.assertLessEqual(t.max().item(), 1.0)
            # A constant map would satisfy the range check; demand structure.
            self.assertGreater(pixel.std().item(), 1e-3)

    def test_batch_independence_float64(self):
        # In float64 the only batch-size effect left is GEMM summation order
        # (~1e-15); anything that mixes images (e.g. text conditioned on image
        # 0, as in the cuvis fork) shows up orders of magnitude above 1e-9.
        # float32 is not used here: its GEMM blocking differs with the batch
        # size and the 100x logit scale lifts that to ~2e-5, beyond 1e-5.
        m = torch.jit.load(self.out).double()
        x = images(5, 3, 112, torch.float64)
        with torch.no_grad():
            pixel3, image3 = m(x)
            for i in range(3):
                pixel1, image1 = m(x[i:i + 1])
                self.assertLessEqual((pixel1[0] - pixel3[i]).abs().max().item(), 1e-9, f"image {i}")
                self.assertLessEqual(abs(image1[0].item() - image3[i].item()), 1e-9, f"image {i}")
        self.assertEqual(pixel3.dtype, torch.float64)

    def test_batch_independence_check_catches_image0_text(self):
        # Negative control: the same comparison on a model whose text branch
        # uses image 0's dynamic prompt for every image (the upstream flaw).
        flawed = tiny_model(3).double()
        original = flawed.encode_text
        flawed.encode_text = lambda dyn: original(dyn[0:1].expand_as(dyn))
        x = images(5, 3, 112, torch.float64)
        with torch.no_grad():
            pixel3, _ = flawed(x)
            pixel1, _ = flawed(x[1:2])
        self.assertGreater((pixel1[0] - pixel3[1]).abs().max().item(), 1e-4)

    def test_attributes_after_load(self):
        m = torch.jit.load(self.out)
        want = {"image_size": 112, "backbone": "tiny-vit", "prompt": "lentils", "weight_name": "tiny-random-seed-3",
                "detector_name": "AdaCLIP", "contract_version": 1, "prompt_set": "adaclip", "attention": self.meta["attention"]}
        for k, v in want.items():
            self.assertEqual(getattr(m, k), v, k)
            self.assertIs(type(getattr(m, k)), type(v), k)
        # Attributes, not inlined constants: they are in the module's C++ attribute table.
        for k in want:
            self.assertTrue(m._c.hasattr(k), k)
        extra = {ex.EXTRA_FILE_NAME: ""}
        torch.jit.load(self.out, _extra_files=extra)
        prov = json.loads(extra[ex.EXTRA_FILE_NAME])
        self.assertEqual(prov["meta"]["weight_name"], "tiny-random-seed-3")
        self.assertEqual(len(prov["sentences"]["normal"]), 28)

    def test_wrong_input_shape_is_a_clear_error(self):
        # torch.jit.Error carries the TorchScript RuntimeError's text (C++ sees
        # the same text in the c10::Error the Go side turns into an error).
        with self.assertRaisesRegex(Exception, r"RuntimeError: AdaCLIP detector: input must be \[B,3,112,112\].*got \[1, 3, 126, 126\]"):
            self.loaded(images(1, 1, 126))

    def test_gradient_reaches_input_like_eager(self):
        x1 = images(21, 2, 112).requires_grad_(True)
        x2 = x1.detach().clone().requires_grad_(True)
        for model, x in ((self.loaded, x1), (self.eager, x2)):
            pixel, image = model(x)
            (pixel.mean() + image.sum()).backward()
        self.assertTrue(torch.isfinite(x1.grad).all())
        self.assertGreater(x1.grad.abs().sum().item(), 0.0)
        scale = x2.grad.abs().max().item()
        self.assertLessEqual((x1.grad - x2.grad).abs().max().item(), 1e-5 * max(scale, 1.0))

    def test_graph_is_device_and_dtype_neutral(self):
        # fp16 and CUDA happen on the Go side by converting the module; a
        # device or a float32 dtype frozen into the trace would break that.
        graph = self.loaded.inner.inlined_graph
        for node in graph.nodes():
            if node.kind() == "prim::Constant":
                self.assertNotIn("Device", str(node.output().type()), str(node))
            if node.kind() == "aten::to":
                dtype = list(node.inputs())[1].toIValue()
                self.assertIn(dtype, (5, torch.float16), f"only the upstream prompt rounding (to fp16 = 5) may cast: {node}")
        m = torch.jit.load(self.out).double()
        x = images(31, 2, 112)
        with torch.no_grad():
            got64, got32 = m(x.double()), self.loaded(x)
        self.assertEqual(got64[0].dtype, torch.float64)
        for a, b in zip(got64, got32):
            self.assertLessEqual((a.float() - b).abs().max().item(), 1e-3)

    def test_plugin_folder(self):
        manifest_path = os.path.join(self.plugin, ex.MANIFEST_NAME)
        pt = os.path.join(self.plugin, ex.PLUGIN_FILE_NAME)
        with open(pt, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        with open(manifest_path, encoding="utf-8") as f:
            text = f.read()
        self.assertEqual(re.findall(r'sha256: "([0-9a-f]{64})"', text), [digest])
        with open(self.out, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest, "--out and the plugin file differ")
        try:
            import yaml
        except ImportError:
            self.skipTest("PyYAML not installed; sha256 checked by regex only")
        doc = yaml.safe_load(text)
        self.assertEqual(doc["version"], 1)
        self.assertEqual(doc["plugin"], "adaclip_tiny")
        node, = doc["nodes"]
        self.assertEqual(node["name"], ex.DEFAULT_NODE_NAME)
        self.assertEqual(node["kind"], "torchscript_detector")
        self.assertEqual(node["files"], [{"path": "detector.pt", "sha256": digest}])
        self.assertEqual(node["ports"]["inputs"], [{"name": "rgb_image", "dtype": "float32", "shape": [-1, -1, -1, 3]}])
        self.assertEqual(node["ports"]["outputs"], [{"name": "scores", "dtype": "float32", "shape": [-1, -1, -1, 1]},
                                                    {"name": "anomaly_score", "dtype": "float32", "shape": [-1]}])
        self.assertEqual(node["params"], {"gaussian_sigma": {"default": 4.0},
                                          "use_half_precision": {"default": False, "allowed": [True, False]},
                                          "enable_warmup": {"default": True}, "enable_gradients": {"default": False}})

    def test_cli_process_is_reproducible(self):
        # Two fresh processes (TorchScript mangles type names per process, so
        # in-process exports are not comparable byte for byte).
        digests = []
        for name in ("a.pt", "b.pt"):
            out = os.path.join(self.tmp.name, name)
            proc = subprocess.run([sys.executable, os.path.join(HERE, "export_adaclip.py"), "--tiny", "--seed", "9", "--out", out],
                                  capture_output=True, text=True, timeout=300)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            with open(out, "rb") as f:
                digests.append(hashlib.sha256(f.read()).hexdigest())
            self.assertEqual(json.loads(proc.stdout)["sha256"], digests[-1])
        self.assertEqual(digests[0], digests[1])


class KeyMappingTest(unittest.TestCase):
    def test_table_examples(self):
        cases = [
            ("clip", "visual.transformer.resblocks.23.attn.in_proj_weight", "visual.transformer.resblocks.23.attn.in_proj_weight"),
            ("clip", "transformer.resblocks.11.mlp.c_proj.bias", "transformer.resblocks.11.mlp.c_proj.bias"),
            ("clip", "module.visual.ln_post.weight", "visual.ln_post.weight"),
            ("clip", "token_embedding.weight", "token_embedding.weight"),
            ("clip", "logit_scale", "logit_scale"),
            ("adaclip", "clip_model.text_prompter.static_prompts.3", "text_prompter.static_prompts.3"),
            ("adaclip", "module.clip_model.patch_token_layer.head.2.weight", "patch_token_layer.head.2.weight"),
            ("adaclip", "clip_model.cls_token_layer.head.0.bias", "cls_token_layer.head.0.bias"),
            ("adaclip", "clip_model.dynamic_visual_prompt_generator.head.4.weight", "dynamic_visual_prompt_generator.head.4.weight"),
            ("adaclip", "clip_model.dynamic_text_prompt_generator.head.0.bias", "dynamic_text_prompt_generator.head.0.bias"),
            # Keys of the wrong file, or not in the table, map to nothing.
            ("clip", "patch_token_layer.head.0.weight", None),
            ("adaclip", "visual.proj", None),
            ("clip", "visual.transformer.resblocks.0.attn.q_proj_weight", None),
            ("clip", "input_resolution", None),
        ]
        for source, key, want in cases:
            self.assertEqual(am.map_key(source, key), want, f"{source}:{key}")

    def test_every_parameter_covered_by_exactly_one_rule(self):
        for name, _ in tiny_model(0).named_parameters():
            hits = [r for r in am.KEY_TABLE if r.match(name) == name]
            self.assertEqual(len(hits), 1, name)

    def test_docs_hold_the_key_table(self):
        with open(DOC, encoding="utf-8") as f:
            self.assertIn(am.key_table_markdown(), f.read())

    def test_round_trip_through_official_layout(self):
        src = tiny_model(1)
        clip, adapter = am.official_state_dicts(src, source_grid=am.TINY_CONFIG.grid)
        adapter = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(adapter.items())}
        dst = tiny_model(2)
        report = am.load_official(dst, clip, adapter)
        self.assertEqual(sorted(report.ignored), ["clip:context_length", "clip:input_resolution", "clip:vocab_size"])
        self.assertEqual(report.unexpected, [])
        for (name, p), (_, q) in zip(src.named_parameters(), dst.named_parameters()):
            # CLIP weights travel as fp16 like OpenAI's archive; adapters as fp32.
            want = p.half().float() if name in clip else p
            self.assertTrue(torch.equal(q, want), name)

    def test_positional_embedding_resized_like_numpy_bicubic(self):
        src = tiny_model(1)
        clip, adapter = am.official_state_dicts(src)  # grid 6 (source) -> model grid 8
        old = clip["visual.positional_embedding"].double().numpy()
        self.assertEqual(old.shape[0], 1 + 6 * 6)
        dst = tiny_model(2)
        report = am.load_official(dst, clip, adapter)
        self.assertEqual(report.resized, ["visual.positional_embedding"])
        grid = old[1:].reshape(6, 6, -1)
        m = np_bicubic_matrix(6, 8)
        want = np.einsum("ah,hwc,bw->abc", m, grid, m).reshape(64, -1)
        got = dst.visual.positional_embedding.detach().double().numpy()
        np.testing.assert_allclose(got[0], old[0], atol=0, rtol=0)
        np.testing.assert_allclose(got[1:], want, atol=1e-5)

    def _official(self):
        return am.official_state_dicts(tiny_model(1), source_grid=am.TINY_CONFIG.grid)

    def test_missing_keys_listed_per_file(self):
        clip, adapter = self._official()
        del clip["visual.ln_post.bias"]
        del adapter["clip_model.text_prompter.static_prompts.3"]  # a depth-3 checkpoint
        with self.assertRaises(am.KeyMappingError) as cm:
            am.load_official(tiny_model(2), clip, adapter)
        msg = str(cm.exception)
        self.assertRegex(msg, r"missing from the clip file: visual\.ln_post\.bias")
        self.assertRegex(msg, r"missing from the adaclip file: text_prompter\.static_prompts\.3")

    def test_shape_mismatch_names_both_shapes(self):
        clip, adapter = self._official()
        adapter["clip_model.visual_prompter.static_prompts.0"] = torch.randn(2, am.TINY_CONFIG.vision_width)  # length 2
        with self.assertRaisesRegex(am.KeyMappingError, r"visual_prompter\.static_prompts\.0: shape \[2, 64\] does not fit .* \[5, 64\]"):
            am.load_official(tiny_model(2), clip, adapter)

    def test_unexpected_and_duplicate_keys(self):
        clip, adapter = self._official()
        adapter["clip_model.freeze_clip.visual.proj"] = torch.zeros(1)
        with self.assertRaisesRegex(am.KeyMappingError, r"unexpected keys .*adaclip:clip_model\.freeze_clip\.visual\.proj"):
            am.load_official(tiny_model(2), clip, adapter)
        report = am.load_official(tiny_model(2), clip, adapter, allow_unexpected=True)
        self.assertEqual(report.unexpected, ["adaclip:clip_model.freeze_clip.visual.proj"])
        del adapter["clip_model.freeze_clip.visual.proj"]
        adapter["module.clip_model.cls_token_layer.head.0.bias"] = adapter["clip_model.cls_token_layer.head.0.bias"]
        with self.assertRaisesRegex(am.KeyMappingError, r"cls_token_layer\.head\.0\.bias: given twice"):
            am.load_official(tiny_model(2), clip, adapter)

    def test_cli_with_official_files(self):
        # Tiny-shaped files in the official formats: a TorchScript archive of
        # the CLIP part (as OpenAI ships it, fp16, 6x6 grid) and a torch.save'd
        # adapter dict with clip_model. prefixes; token ids as JSON.
        src = tiny_model(4, prompt="pill")
        clip, adapter = am.official_state_dicts(src)
        with tempfile.TemporaryDirectory() as d:
            clip_path, ada_path, tok_path, out = (os.path.join(d, n) for n in ("clip.pt", "pretrained_tiny.pth", "ids.json", "o.pt"))
            torch.jit.save(torch.jit.script(FakeOpenAIArchive(clip)), clip_path)
            torch.save(adapter, ada_path)
            normal, abnormal = am.build_sentences("pill")
            rows = src.text_tokens.tolist()
            with open(tok_path, "w") as f:
                json.dump({"sentences": {"normal": normal, "abnormal": abnormal},
                           "normal": rows[:len(normal)], "abnormal": rows[len(normal):]}, f)
            rc, stdout, stderr = run_cli(["--tiny", "--weights", ada_path, "--clip", clip_path, "--token-ids", tok_path,
                                          "--prompt", "pill", "--out", out])
            self.assertEqual(rc, 0, stderr)
            m = torch.jit.load(out)
            self.assertEqual(m.weight_name, "pretrained_tiny")
            self.assertTrue(m.tokenizer.startswith("precomputed"))
            ref = tiny_model(5, prompt="pill")
            am.load_official(ref, clip, adapter)
            x = images(8, 2, 112)
            with torch.no_grad():
                for a, b in zip(m(x), ref(x)):
                    self.assertLessEqual((a - b).abs().max().item(), 1e-5)
            # The same ids for another prompt are refused, naming the file.
            rc, _, stderr = run_cli(["--tiny", "--weights", ada_path, "--clip", clip_path, "--token-ids", tok_path,
                                     "--prompt", "lentils", "--out", out + "2"])
            self.assertEqual(rc, 1)
            self.assertIn("ids.json", stderr)
            self.assertIn("other sentences", stderr)
            self.assertFalse(os.path.exists(out + "2"))


class FakeOpenAIArchive(torch.nn.Module):
    """FakeOpenAIArchive is a TorchScript module whose state_dict has the
    OpenAI CLIP archive's keys (nested modules stand for the dotted names)."""

    def __init__(self, state):
        super().__init__()
        for key, value in state.items():
            *path, leaf = key.split(".")
            mod = self
            for part in path:
                if not hasattr(mod, part):
                    mod.add_module(part, torch.nn.Module())
                mod = getattr(mod, part)
            if value.is_floating_point():
                mod.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
            else:
                mod.register_buffer(leaf, value.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FullSizeTest(unittest.TestCase):
    """The full --random-weights model is built (not traced: minutes on CPU)."""

    @classmethod
    def setUpClass(cls):
        cls.model, cls.meta, cls.prov = ex.build_model(ex.parse_args(["--random-weights", "--out", "unused.pt"]))

    def test_parameter_counts(self):
        clip, adapter = am.count_parameters(self.model)
        # Closed form of the architecture (ViT-L/14 at 518 px, text 12x768).
        vw, vl, tw, tl, e, v, ctx = 1024, 24, 768, 12, 768, 49408, 77
        block = lambda w: 4 * w * w + 4 * w + 2 * w * 4 * w + 4 * w + w + 4 * w  # attn + out + mlp + 2 LN
        vision = 3 * 14 * 14 * vw + vw + (37 * 37 + 1) * vw + 2 * vw + vl * block(vw) + 2 * vw + vw * e
        text = v * tw + ctx * tw + tl * block(tw) + 2 * tw + tw * e + 1
        self.assertEqual(clip, vision + text)
        self.assertAlmostEqual(clip / 428e6, 1.0, delta=0.01)
        # The adapter count quoted for the released checkpoints (~10.7 M).
        self.assertEqual(adapter, 4 * (1024 * 768 + 768) + (768 * 768 + 768) + 5 * (768 * 1024 + 1024)
                         + 5 * (768 * 768 + 768) + 4 * 5 * (1024 + 768))
        self.assertAlmostEqual(adapter / 10.7e6, 1.0, delta=0.01)

    def test_geometry(self):
        cfg = self.model.cfg
        self.assertEqual((cfg.image_size, cfg.grid, cfg.num_patches), (518, 37, 1369))
        self.assertEqual(cfg.feature_layers, (6, 12, 18, 24))
        self.assertEqual(self.model.topk, 100)
        self.assertEqual(self.model.kmeans_init.tolist(), [round(j * 99 / 19) for j in range(20)])
        self.assertEqual(self.meta["image_size"], 518)
        self.assertEqual(self.meta["backbone"], "ViT-L-14-336")
        with torch.no_grad():
            tokens = self.model.visual.embed(images(2, 1, 518))
        self.assertEqual(list(tokens.shape), [1, 1370, 1024])


class SentencesAndCliTest(unittest.TestCase):
    def test_sentence_ensembles(self):
        normal, abnormal = am.build_sentences("pill-box")
        self.assertEqual((len(normal), len(abnormal)), (28, 20))
        self.assertEqual(normal[0], "a bad photo of a pill box.")
        self.assertEqual(abnormal[-1], "a cropped photo of the pill box with damage.")
        normal, abnormal = am.build_sentences("x", "cuvis")
        self.assertEqual((len(normal), len(abnormal)), (40, 32))
        normal, _ = am.build_sentences("")
        self.assertEqual(normal[0], "a bad photo of a .")

    def test_stand_in_tokenizer(self):
        rows = am.stand_in_tokenize(["a bad photo of a lentil.", "a bad photo of a stone."], 77, 49408)
        t = torch.tensor(rows)
        self.assertEqual(t.shape, (2, 77))
        self.assertEqual(t[:, 0].tolist(), [49406, 49406])
        self.assertEqual(t.argmax(-1).tolist(), [8, 8])  # SOT, 6 words, '.', then EOT
        self.assertEqual(t.max().item(), 49407)
        self.assertEqual(rows[0][:6], rows[1][:6])
        self.assertNotEqual(rows[0][6], rows[1][6])
        self.assertEqual(rows, am.stand_in_tokenize(["a bad photo of a lentil.", "a bad photo of a stone."], 77, 49408))

    def test_token_id_files(self):
        cfg = am.TINY_CONFIG
        normal, abnormal = am.build_sentences("pill")
        rows = am.stand_in_tokenize(normal + abnormal, cfg.context_length, cfg.vocab_size)
        with tempfile.TemporaryDirectory() as d:
            npy = os.path.join(d, "ids.npy")
            np.save(npy, np.array(rows, dtype=np.int64))
            self.assertEqual(ex.load_token_ids(npy, normal, abnormal, cfg).tolist(), rows)
            bad = os.path.join(d, "short.json")
            with open(bad, "w") as f:
                json.dump(rows[:-1], f)
            with self.assertRaisesRegex(ex.ExportError, r"short\.json.*expected 48 token rows"):
                ex.load_token_ids(bad, normal, abnormal, cfg)
            with open(bad, "w") as f:
                json.dump([r[:-1] + [cfg.vocab_size] for r in rows], f)
            with self.assertRaisesRegex(ex.ExportError, r"short\.json.*outside \[0, 1000\)"):
                ex.load_token_ids(bad, normal, abnormal, cfg)

    def test_usage_errors(self):
        cases = [
            (["--random-weights"], "--out"),
            (["--out", "x.pt"], "choose the weights"),
            (["--out", "x.pt", "--weights", "a.pth"], "go together"),
            (["--out", "x.pt", "--weights", "a.pth", "--clip", "c.pt"], "token ids"),
            (["--out", "x.pt", "--tiny", "--random-weights"], "choose one"),
            (["--tiny", "--plugin-dir", "p", "--plugin-name", "bad name"], "--plugin-name"),
            (["--tiny", "--plugin-dir", "p", "--node-name", "a..b"], "--node-name"),
        ]
        for argv, needle in cases:
            rc, _, err = run_cli(argv)
            self.assertEqual(rc, 2, argv)
            self.assertIn(needle, err, argv)

    def test_missing_weight_file_leaves_nothing(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "o.pt")
            ids = os.path.join(d, "ids.json")
            with open(ids, "w") as f:
                json.dump([], f)
            rc, _, err = run_cli(["--tiny", "--weights", os.path.join(d, "none.pth"), "--clip", os.path.join(d, "c.pt"),
                                  "--token-ids", ids, "--out", out])
            self.assertEqual(rc, 1)
            self.assertIn("ids.json", err)  # token ids are read first
            with open(ids, "w") as f:
                cfg = am.TINY_CONFIG
                n, a = am.build_sentences("")
                json.dump(am.stand_in_tokenize(n + a, cfg.context_length, cfg.vocab_size), f)
            rc, _, err = run_cli(["--tiny", "--weights", os.path.join(d, "none.pth"), "--clip", os.path.join(d, "c.pt"),
                                  "--token-ids", ids, "--out", out, "--plugin-dir", os.path.join(d, "plugin")])
            self.assertEqual(rc, 1)
            self.assertIn("c.pt: no such file", err)
            self.assertEqual(sorted(os.listdir(d)), ["ids.json"])  # no .pt, no plugin folder, no temporaries

    def test_print_sentences(self):
        rc, out, _ = run_cli(["--print-sentences", "--prompt", "lentils", "--prompt-set", "cuvis"])
        self.assertEqual(rc, 0)
        doc = json.loads(out)
        self.assertEqual((len(doc["normal"]), len(doc["abnormal"])), (40, 32))
        self.assertEqual(doc["normal"][0], "a bad photo of a lentils.")


def torch_runs_aoti():
    base = torch.__version__.split("+")[0].split(".")
    return (int(base[0]), int(base[1])) >= (2, 6)


class AOTIExportTest(unittest.TestCase):
    """--aoti: an AOTInductor package (torch >= 2.6). The built-in detector's round trip
    (Go's TorchScript -> --builtin-from -> .pt2 -> Go) is tested in nodes/detect."""

    def test_usage_errors(self):
        cases = [
            (["--tiny", "--out", "x.pt", "--max-batch", "4"], "go with --aoti"),
            (["--builtin-from", "b.pt", "--out", "x.pt2"], "go with --aoti"),
            (["--aoti", "--tiny", "--plugin-dir", "p"], "--out"),
            (["--aoti", "--tiny", "--out", "x.pt2", "--plugin-dir", "p"], "TorchScript only"),
            (["--aoti", "--builtin-from", "b.pt", "--tiny", "--out", "x.pt2"], "its own detector"),
            (["--aoti", "--tiny", "--out", "x.pt2", "--max-batch", "0"], "--max-batch"),
        ]
        for argv, needle in cases:
            rc, _, err = run_cli(argv)
            self.assertEqual(rc, 2, argv)
            self.assertIn(needle, err, argv)

    @unittest.skipIf(torch_runs_aoti(), "this torch compiles packages")
    def test_old_torch_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            rc, _, err = run_cli(["--aoti", "--tiny", "--out", os.path.join(d, "t.pt2"), "--device", "cpu"])
            self.assertEqual(rc, 1)
            self.assertIn("--aoti needs torch 2.6 or newer", err)
            self.assertEqual(os.listdir(d), [])

    @unittest.skipUnless(torch_runs_aoti(), "AOTInductor packages need torch >= 2.6")
    def test_tiny_package_equals_eager(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "tiny.pt2")
            argv = ["--aoti", "--tiny", "--image-size", "56", "--max-batch", "4", "--out", out, "--device", "cpu"]
            rc, stdout, err = run_cli(argv)
            self.assertEqual(rc, 0, err)
            self.assertEqual(os.listdir(d), ["tiny.pt2"])  # no temporaries left
            summary = json.loads(stdout)
            with open(out, "rb") as f:
                self.assertEqual(summary["sha256"], hashlib.sha256(f.read()).hexdigest())
            pkg = torch._inductor.aoti_load_package(out)
            meta = pkg.get_metadata()
            for k, v in {"spectraclip.torch_version": torch.__version__, "spectraclip.device": "cpu",
                         "spectraclip.inputs": "float32[1..4,3,56,56]", "image_size": "56",
                         "detector_name": "AdaCLIP", "contract_version": "1", "AOTI_DEVICE_KEY": "cpu"}.items():
                self.assertEqual(meta.get(k), v, k)
            # a fresh eager model built from the same options, fresh inputs, batch 1 and 3;
            # tolerance as the exporter's (HSF's k-means near-ties, see export_aoti)
            model, _, _ = ex.build_model(ex.parse_args(argv))
            for b, seed in ((1, 77), (3, 78)):
                x = images(seed, b, 56)
                with torch.no_grad():
                    got, want = pkg(x), model(x)
                self.assertEqual([list(t.shape) for t in got], [[b, 56, 56], [b]])
                for g, w in zip(got, want):
                    self.assertLessEqual((g - w).abs().max().item(), 1e-3)


if __name__ == "__main__":
    unittest.main()
