"""Tests of scripts/bench_reference.py (the Python benchmark peer).

Run from the repository root:  /usr/bin/python3 -m unittest scripts/test_bench_reference.py

Tiny sizes only (B=1..2, 40×40 or smaller, 8 bands) so the whole file runs in seconds
without torch.compile; the --compile tests (PyTorch >= 2.0 and a C++ compiler, else skipped)
compile two small pipelines with inductor, about a minute on two cold CPU cores.
Each node is compared against an independent float64 numpy computation on seeded, non-zero
random input, with the tolerance stated at the assertion; the end-to-end runs check shapes,
JSON keys and that figures are finite and positive.

The built-in detector tests need the real exported file: bin/spectraclip (or $SPECTRACLIP)
export-detector --builtin; they skip, saying so, where the binary is absent or does not start.
"""

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench_reference as br  # noqa: E402

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


class TinyDetector(nn.Module):
    """TinyDetector meets the detector contract: forward(x [B,3,S,S]) -> (pixel [B,S,S], image [B]).
    Its score is a sigmoid of a fixed colour projection, so gradients reach the input."""

    def __init__(self, size):
        super().__init__()
        self.image_size = size
        self.contract_version = 1
        self.detector_name = "tiny-test"
        self.backbone = "none"
        self.prompt = ""
        self.weight_name = "none"
        self.proj = nn.Parameter(torch.tensor([0.7, -0.4, 0.3]))

    def forward(self, x):
        pix = torch.sigmoid((x * self.proj.view(1, 3, 1, 1)).sum(1))
        return pix, pix.flatten(1).amax(1)


class NoSizeDetector(nn.Module):
    def forward(self, x):
        pix = x.mean(1)
        return pix, pix.flatten(1).mean(1)


def write_detector(dirname, module, name="det.pt"):
    path = os.path.join(dirname, name)
    torch.jit.script(module).save(path)
    return path


_builtin_cache = {}


def export_builtin(dirname, image_size=32):
    """export_builtin writes the real built-in detector with `spectraclip export-detector --builtin`
    and returns (path, None), or (None, why) when the binary is absent or fails (it is retried
    with build-pip/ on LD_LIBRARY_PATH, where `make` may have put LibTorch)."""
    exe = os.environ.get("SPECTRACLIP") or os.path.join(ROOT, "bin", "spectraclip")
    if not os.access(exe, os.X_OK):
        return None, "%s absent (make build; or set $SPECTRACLIP)" % exe
    path = os.path.join(dirname, "builtin%d.pt" % image_size)
    cmd = [exe, "export-detector", "--builtin", "--image-size", str(image_size), "--out", path]
    envs = [None]
    pip = os.path.join(ROOT, "build-pip")
    if os.path.isdir(pip):
        ld = os.environ.get("LD_LIBRARY_PATH", "")
        envs.append(dict(os.environ, LD_LIBRARY_PATH=pip + (":" + ld if ld else "")))
    why = ""
    for env in envs:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            why = str(e)
            continue
        if r.returncode == 0 and os.path.exists(path):
            try:
                torch.jit.load(path)
            except RuntimeError as e:  # e.g. a file format newer than this PyTorch
                return None, "torch %s cannot load the exported built-in detector: %s" % (
                    torch.__version__, str(e).splitlines()[0])
            return path, None
        why = (r.stderr.strip().splitlines() or ["exit %d" % r.returncode])[-1]
    return None, "%s export-detector --builtin failed: %s" % (exe, why)


def builtin_detector(testcase, image_size=32):
    """builtin_detector returns the path of a built-in detector file exported once per process
    (kept in a directory removed at exit), or skips testcase with the reason."""
    if image_size not in _builtin_cache:
        d = tempfile.mkdtemp(prefix="bench_ref_builtin")
        import atexit
        atexit.register(shutil.rmtree, d, True)
        _builtin_cache[image_size] = export_builtin(d, image_size)
    path, why = _builtin_cache[image_size]
    if path is None:
        testcase.skipTest(why)
    return path


def compile_skip_reason():
    """compile_skip_reason says why torch.compile (inductor, CPU) cannot run here, or None."""
    if not br.have_compile():
        return "torch.compile needs PyTorch >= 2.0 (this is torch %s)" % torch.__version__
    cxx = os.environ.get("CXX") or "g++"  # what inductor's CPU backend runs
    if not shutil.which(cxx):
        return "no C++ compiler %s for inductor's CPU backend" % cxx
    return None


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 3.0 - 0.5


def run_main(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = br.main(argv)
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


class TestNodes(unittest.TestCase):
    def test_parse_size(self):
        cases = [("256x256", (256, 256)), ("32X48", (32, 48)), ("1x7", (1, 7))]
        for s, want in cases:
            with self.subTest(s=s):
                self.assertEqual(br.parse_size(s), want)
        for bad in ["256", "0x4", "ax3", "3x4x5", "-2x3", ""]:
            with self.subTest(bad=bad):
                with self.assertRaisesRegex(ValueError, "--size"):
                    br.parse_size(bad)

    def test_minmax_normalizer(self):
        fit = rand(2, 5, 6, 4, seed=1)
        x = rand(1, 5, 6, 4, seed=2) * 2.0  # goes outside the fitted range: not clamped
        got = br.MinMaxNormalizer().fit(fit)(x).numpy().astype(np.float64)
        f, xn = fit.numpy().astype(np.float64), x.numpy().astype(np.float64)
        want = (xn - f.min()) / max(f.max() - f.min(), 1e-6)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)  # float32 vs float64
        self.assertTrue((got > 1.0).any() or (got < 0.0).any())

    def test_pca_against_numpy(self):
        fit = rand(2, 8, 8, 6, seed=3)
        x = rand(2, 8, 8, 6, seed=4)
        pca = br.PCAReducer(6, k=3).fit(fit)
        pix = fit.numpy().reshape(-1, 6).astype(np.float64)
        mean = pix.mean(0)
        evals, evecs = np.linalg.eigh(np.cov(pix, rowvar=False))
        comps = evecs[:, np.argsort(-evals)[:3]].T
        got_c = pca.components.numpy().astype(np.float64)
        for k in range(3):  # eigenvector signs are free
            sign = np.sign(np.dot(got_c[k], comps[k]))
            np.testing.assert_allclose(sign * got_c[k], comps[k], atol=1e-5)
        # output = per-image per-channel min-max of the projection (signs taken from pca)
        proj = (x.numpy().astype(np.float64) - mean) @ got_c.T
        mn = proj.min(axis=(1, 2), keepdims=True)
        mx = proj.max(axis=(1, 2), keepdims=True)
        want = (proj - mn) / np.maximum(mx - mn, 1e-6)
        with torch.no_grad():
            got = pca(x).numpy()
        self.assertEqual(got.shape, (2, 8, 8, 3))
        np.testing.assert_allclose(got, want, atol=1e-5)

    def test_drcnn_against_numpy(self):
        torch.manual_seed(5)
        m = br.DRCNNReducer((8, 16, 8, 3), slope=0.1)
        x = rand(2, 6, 7, 8, seed=6)
        with torch.no_grad():
            got = m(x).numpy()
        convs = [l for l in m.net if isinstance(l, nn.Conv2d)]
        y = x.numpy().astype(np.float64)
        for i, c in enumerate(convs):
            wgt = c.weight.detach().numpy()[:, :, 0, 0].astype(np.float64)
            y = y @ wgt.T + c.bias.detach().numpy()
            if i < len(convs) - 1:
                y = np.where(y > 0, y, 0.1 * y)
        mn = y.min(axis=(1, 2), keepdims=True)
        mx = y.max(axis=(1, 2), keepdims=True)
        want = np.clip((y - mn) / np.maximum(mx - mn, 1e-6), 0, 1)
        self.assertEqual(got.shape, (2, 6, 7, 3))
        np.testing.assert_allclose(got, want, atol=1e-5)
        # xavier-uniform bound sqrt(6/(fan_in+fan_out)), biases zero
        for c in convs:
            bound = math.sqrt(6.0 / (c.in_channels + c.out_channels))
            self.assertLessEqual(c.weight.abs().max().item(), bound + 1e-7)
            self.assertEqual(c.bias.abs().max().item(), 0.0)

    def test_tau_schedule(self):
        for e, want in [(0, 10.0), (19, 0.1), (25, 0.1), (-3, 10.0)]:
            with self.subTest(epoch=e):
                self.assertAlmostEqual(br.tau_schedule(e, 20), want, places=9)
        f = 7 / 19
        self.assertAlmostEqual(br.tau_schedule(7, 20), 10 ** (1 - 2 * f), places=9)  # closed form
        self.assertEqual(br.tau_schedule(3, 1), 0.1)

    def test_concrete(self):
        torch.manual_seed(7)
        m = br.ConcreteReducer(8)
        x = rand(1, 4, 5, 8, seed=8)
        m.eval()
        with torch.no_grad():
            got = m(x).numpy()
        idx = m.logits.detach().argmax(-1).numpy()
        np.testing.assert_array_equal(got, x.numpy()[..., idx])  # one-hot selects bands exactly
        m.train()
        m.tau = 2.0
        w = m.weights().detach().numpy().astype(np.float64)
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
        self.assertTrue((w > 0).all())
        self.assertFalse(np.allclose(w, m.weights().detach().numpy(), atol=1e-6))  # fresh noise each call

    def test_gaussian_kernel(self):
        for sigma in [0.5, 2.0, 4.0]:
            with self.subTest(sigma=sigma):
                k = br.gaussian_kernel2d(sigma, "cpu").numpy().astype(np.float64)
                n = 2 * (math.floor(3 * sigma) + 1) + 1
                self.assertEqual(k.shape, (n, n))
                ax = np.arange(n) - n // 2
                want = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma ** 2))
                np.testing.assert_allclose(k, want / want.sum(), atol=1e-7)

    def test_postprocess_zero_padding_blur(self):
        with tempfile.TemporaryDirectory() as d:
            det = br.Detector(write_detector(d, TinyDetector(12)), sigma=1.0)
        pix = rand(1, 12, 12, seed=9)
        got = det.postprocess(pix, 12, 12).numpy()  # same size: bilinear is the identity
        self.assertEqual(got.shape, (1, 12, 12, 1))
        k = br.gaussian_kernel2d(1.0, "cpu").numpy().astype(np.float64)
        r = k.shape[0] // 2
        p = np.pad(pix.numpy()[0].astype(np.float64), r)  # zero padding
        want = np.zeros((12, 12))
        for i in range(12):
            for j in range(12):
                want[i, j] = (p[i:i + 2 * r + 1, j:j + 2 * r + 1] * k).sum()
        np.testing.assert_allclose(got[0, :, :, 0], want, atol=1e-5)

    def test_preprocess_same_size(self):
        with tempfile.TemporaryDirectory() as d:
            det = br.Detector(write_detector(d, TinyDetector(10)))
        rgb = torch.rand(2, 10, 10, 3, generator=torch.Generator().manual_seed(10))  # in [0,1): scaled by 255
        got = det.preprocess(rgb).numpy().astype(np.float64)
        x = np.transpose(rgb.numpy().astype(np.float64), (0, 3, 1, 2))
        want = (x - CLIP_MEAN[None, :, None, None]) / CLIP_STD[None, :, None, None]
        self.assertEqual(got.shape, (2, 3, 10, 10))
        np.testing.assert_allclose(got, want, atol=1e-4)  # ×255 and /255 round trip in float32
        # resizing changes the side to S
        with tempfile.TemporaryDirectory() as d:
            det = br.Detector(write_detector(d, TinyDetector(7)))
        self.assertEqual(tuple(det.preprocess(rgb).shape), (2, 3, 7, 7))

    def test_quantile_decide(self):
        s = rand(2, 9, 11, 1, seed=11)
        for q in [0.5, 0.99, 0.0]:
            with self.subTest(q=q):
                got = br.quantile_decide(s, q).numpy()
                thr = np.quantile(s.numpy().reshape(2, -1).astype(np.float64), q, axis=1)
                want = s.numpy() >= thr.astype(np.float32)[:, None, None, None]
                np.testing.assert_array_equal(got, want)
                self.assertEqual(got.shape, (2, 9, 11, 1))

    def test_iou_loss(self):
        pred = rand(2, 6, 6, 1, seed=12)
        tgt = torch.rand(2, 6, 6, 1, generator=torch.Generator().manual_seed(13)) < 0.3
        p = pred.numpy().astype(np.float64)
        t = tgt.numpy().astype(np.float64)
        p = (p - p.min()) / (p.max() - p.min() + 1e-6)
        inter = (p * t).sum()
        want = 1 - (inter + 1e-6) / (p.sum() + t.sum() - inter + 1e-6)
        self.assertAlmostEqual(br.iou_loss_minmax(pred, tgt).item(), want, delta=1e-5)
        flat = torch.full((1, 3, 3, 1), 0.7)
        t2 = torch.zeros(1, 3, 3, 1, dtype=torch.bool)
        t2[0, 0, 0, 0] = True
        # constant prediction → p = 0.5: I = 0.5, U = 4.5 + 1 - 0.5
        self.assertAlmostEqual(br.iou_loss_minmax(flat, t2).item(), 1 - (0.5 + 1e-6) / (5.0 + 1e-6), delta=1e-6)


class TestBench(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.det_path = write_detector(cls.tmp.name, TinyDetector(16))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_pipeline_shapes_all_variants(self):
        cube = br.make_cube(1, 32, 32, 8, seed=3)
        det = br.Detector(self.det_path)
        for v in br.VARIANTS:
            with self.subTest(variant=v):
                pipe = br.Pipeline(v, det, 8, cube)
                with torch.no_grad():
                    rgb = pipe.reduce(cube)
                    scores, img, dec = pipe.forward(cube)
                self.assertEqual(tuple(rgb.shape), (1, 32, 32, 3))
                self.assertEqual(tuple(scores.shape), (1, 32, 32, 1))
                self.assertEqual(tuple(img.shape), (1,))
                self.assertEqual(dec.dtype, torch.bool)
                self.assertEqual(tuple(dec.shape), (1, 32, 32, 1))
                frac = dec.float().mean().item()
                self.assertGreater(frac, 0.0)
                self.assertLess(frac, 0.05)  # ≈1 % of pixels flagged at q=0.99 (ties may add a few)

    def test_train_step_moves_parameters(self):
        cube = br.make_cube(2, 32, 32, 8, seed=4)
        target = br.make_target(2, 32, 32, seed=5, frac=0.05)
        det = br.Detector(self.det_path)
        for v in ["drcnn", "concrete"]:
            with self.subTest(variant=v):
                pipe = br.Pipeline(v, det, 8, cube)
                before = [p.detach().clone() for p in pipe.trainable()]
                opt = torch.optim.AdamW(pipe.trainable(), lr=1e-2)
                loss = br.train_step(pipe, opt, cube, target, 0)
                self.assertTrue(0.0 < loss.item() <= 1.0)
                moved = max((p.detach() - b).abs().max().item() for p, b in zip(pipe.trainable(), before))
                self.assertGreater(moved, 1e-6)  # gradients reached the reducer through the detector
                self.assertFalse(pipe.reducer.training)
        self.assertTrue(all(not p.requires_grad for p in det.module.parameters()))
        self.assertEqual(br.Pipeline("pca", det, 8, cube).trainable(), [])

    def test_run_bench_report(self):
        rep = br.run_bench(self.det_path, batch=1, size=(32, 32), bands=8, threads=1, iters=1, warmup=0,
                           train_iters=1)
        json.dumps(rep)
        for k in ["variants", "threads", "device", "torch", "batch", "size"]:
            self.assertIn(k, rep)
        self.assertEqual(rep["threads"], 1)
        self.assertEqual(rep["size"], "32x32")
        self.assertEqual(rep["torch"], torch.__version__)
        self.assertEqual([v["variant"] for v in rep["variants"]], list(br.VARIANTS))
        for v in rep["variants"]:
            with self.subTest(variant=v["variant"]):
                self.assertGreater(v["fps"], 0)
                self.assertGreater(v["detector_fps"], 0)
                self.assertEqual(set(v["stages"]), set(br.STAGES))
                self.assertTrue(all(t >= 0 and math.isfinite(t) for t in v["stages"].values()))
                if v["variant"] == "pca":
                    self.assertIsNone(v["train_steps_per_s"])
                else:
                    self.assertGreater(v["train_steps_per_s"], 0)
        self.assertIn("concrete", br.format_table(rep))

    def test_main_json_and_table(self):
        base = ["--detector", self.det_path, "--batch", "1", "--size", "24x20", "--bands", "8", "--threads", "1",
                "--iters", "1", "--warmup", "0", "--train-iters", "1"]
        rc, out, err = run_main(base + ["--variant", "drcnn", "--json"])
        self.assertEqual(rc, 0, err)
        rep = json.loads(out)
        self.assertEqual(rep["size"], "24x20")
        self.assertEqual(len(rep["variants"]), 1)
        v = rep["variants"][0]
        for k in ["variant", "fps", "detector_fps", "train_steps_per_s", "stages"]:
            self.assertIn(k, v)
        rc, out, err = run_main(base + ["--variant", "pca"])
        self.assertEqual(rc, 0, err)
        self.assertIn("pca", out)
        self.assertIn("train st/s", out)

    def test_main_errors(self):
        with tempfile.TemporaryDirectory() as d:
            nosize = write_detector(d, NoSizeDetector(), "nosize.pt")
            tiny = ["--bands", "8", "--iters", "1", "--warmup", "0", "--train-iters", "0"]
            cases = [
                (["--detector", nosize, "--size", "16x16"], "image_size"),
                (["--detector", os.path.join(d, "missing.pt"), "--size", "16x16"], "missing.pt"),
                (["--detector", self.det_path, "--size", "32"], "--size"),
                (["--detector", self.det_path, "--size", "16x16", "--quantile", "1.5"], "--quantile"),
                (["--detector", self.det_path, "--size", "16x16", "--batch", "0"], "batch"),
            ]
            for argv, msg in cases:
                with self.subTest(argv=argv):
                    rc, out, err = run_main(argv + tiny)
                    self.assertEqual(rc, 1)
                    self.assertIn(msg, err)
            rc, _, _ = run_main(["--detector", self.det_path, "--variant", "nope"])
            self.assertEqual(rc, 2)  # argparse usage error

    def test_cli_subprocess(self):
        # the script runs as a program too (shebang interpreter, no import side effects)
        r = subprocess.run([sys.executable, os.path.join(HERE, "bench_reference.py"), "--detector", self.det_path,
                            "--variant", "concrete", "--batch", "1", "--size", "16x16", "--bands", "8",
                            "--iters", "1", "--warmup", "0", "--train-iters", "0", "--json"],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        self.assertIsNone(rep["variants"][0]["train_steps_per_s"])
        self.assertGreater(rep["peak_rss_mb"], 10)  # torch alone maps more than that
        self.assertEqual(rep["allocator"], "glibc" if "LD_PRELOAD" not in os.environ else rep["allocator"])

    def test_cli_tcmalloc_peer(self):
        # the tcmalloc peer of make bench-compare: the same script with tcmalloc preloaded
        lib = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
        if not os.path.exists(lib):
            self.skipTest("%s absent (apt-get install libtcmalloc-minimal4)" % lib)
        env = dict(os.environ, LD_PRELOAD=lib)
        r = subprocess.run([sys.executable, os.path.join(HERE, "bench_reference.py"), "--detector", self.det_path,
                            "--variant", "pca", "--batch", "1", "--size", "16x16", "--bands", "8",
                            "--iters", "1", "--warmup", "0", "--train-iters", "0", "--json"],
                           capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        rep = json.loads(r.stdout)
        self.assertEqual(rep["allocator"], "tcmalloc")
        self.assertGreater(rep["variants"][0]["fps"], 0)


class TestBuiltinEager(unittest.TestCase):
    def test_matches_torchscript(self):
        # the eager re-implementation against the real exported file, on fresh inputs of
        # several shapes (square S, non-square, batch 3): the same ops in the same order, so
        # the scores agree to 1e-5 absolute (scores are in [0,1]; in practice they are equal)
        path = builtin_detector(self)
        ts = torch.jit.load(path)
        self.assertEqual(ts.detector_name, br.BUILTIN_NAME)
        m = br.BuiltinDetectorEager(ts)
        self.assertEqual(m.scales, tuple(int(k) for k in ts.scales.split(",")))
        self.assertEqual((m.ridge, m.image_size), (ts.ridge, 32))
        torch.testing.assert_close(m.clip_mean, ts.clip_mean, rtol=0, atol=0)
        torch.testing.assert_close(m.clip_std, ts.clip_std, rtol=0, atol=0)
        g = torch.Generator().manual_seed(21)
        for shape in [(2, 3, 32, 32), (1, 3, 20, 28), (3, 3, 16, 16)]:
            with self.subTest(shape=shape):
                x = torch.randn(*shape, generator=g) * 1.5
                x[0, :, 3:6, 4:8] += 4.0  # a bright patch: some high scores, so the top 1 % is not flat
                with torch.no_grad():
                    want_pix, want_img = ts(x)
                    got_pix, got_img = m(x)
                self.assertEqual(got_pix.shape, want_pix.shape)
                self.assertEqual(got_img.shape, want_img.shape)
                self.assertGreater(want_pix.max().item(), 0.5)
                np.testing.assert_allclose(got_pix.numpy(), want_pix.numpy(), rtol=0, atol=1e-5)
                np.testing.assert_allclose(got_img.numpy(), want_img.numpy(), rtol=0, atol=1e-5)

    def test_eager_builtin_selection(self):
        with tempfile.TemporaryDirectory() as d:
            det = br.Detector(write_detector(d, TinyDetector(16)))
            m, why = det.eager_builtin()
            self.assertIsNone(m)
            self.assertIn("tiny-test", why)
            with self.assertRaisesRegex(ValueError, "not the built-in"):
                br.BuiltinDetectorEager(det.module)
            # named like the built-in but computing something else: the self-check catches it
            fake = TinyDetector(16)
            fake.detector_name = br.BUILTIN_NAME
            fake.ridge = 1e-3
            fake.scales = "3,7"
            fake.register_buffer("clip_mean", torch.tensor(br.CLIP_MEAN).view(1, 3, 1, 1))
            fake.register_buffer("clip_std", torch.tensor(br.CLIP_STD).view(1, 3, 1, 1))
            det = br.Detector(write_detector(d, fake, "fake.pt"))
            m, why = det.eager_builtin()
            self.assertIsNone(m)
            self.assertIn("differs from the file", why)
        m, why = br.Detector(builtin_detector(self)).eager_builtin()
        self.assertIsNone(why)
        self.assertIsInstance(m, br.BuiltinDetectorEager)


class TestCompile(unittest.TestCase):
    def setUp(self):
        why = compile_skip_reason()
        if why:
            self.skipTest(why)

    def check_same(self, pipe, cube, want_mode):
        # compiled (inductor fuses and reorders the float32 reductions) against eager on the same
        # input: pixel and image scores within 1e-4 absolute (scores in [0,1]); decisions equal
        # wherever the eager score is more than 1e-4 away from the eager per-image threshold
        with torch.no_grad():
            s0, i0, d0 = pipe.forward(cube)
            comp = br.CompiledInference(pipe)
            self.assertEqual(comp.mode, want_mode, comp.note)
            s1, i1, d1 = comp(cube)
            s2, _, _ = comp(cube)  # a second call runs the compiled code again: the same answer
        self.assertEqual((s1.shape, i1.shape, d1.shape), (s0.shape, i0.shape, d0.shape))
        self.assertEqual(d1.dtype, torch.bool)
        np.testing.assert_allclose(s1.numpy(), s0.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_allclose(i1.numpy(), i0.numpy(), rtol=0, atol=1e-4)
        np.testing.assert_array_equal(s2.numpy(), s1.numpy())
        b = cube.shape[0]
        thr = torch.quantile(s0.reshape(b, -1), pipe.quantile, dim=1).view(b, 1, 1, 1)
        clear = (s0 - thr).abs() > 1e-4
        np.testing.assert_array_equal(d1[clear].numpy(), d0[clear].numpy())
        self.assertGreater(d1.sum().item(), 0)

    def test_compiled_pipeline_matches_eager(self):
        # the whole pipeline (built-in detector → BuiltinDetectorEager), batch 2, 40×40 → S=32
        path = builtin_detector(self)
        det = br.Detector(path)
        cube = br.make_cube(2, 40, 40, 8, seed=31)
        self.check_same(br.Pipeline("pca", det, 8, cube), cube, "pipeline")
        # the benchmark entry point on the same shapes (inductor's cache makes this compile quick)
        rep = br.run_bench(path, variants=("pca",), batch=2, size=(40, 40),
                           bands=8, threads=2, iters=1, warmup=0, train_iters=0, seed=30, compile=True)
        json.dumps(rep)
        self.assertEqual((rep["peer"], rep["compiled"], rep["warmup"], rep["train"]), ("compiled", "pipeline", 1, "eager"))
        self.assertEqual(rep["compile"], {"backend": "inductor", "mode": "default", "dynamic": False})
        self.assertEqual(rep["torch"], torch.__version__)
        v = rep["variants"][0]
        self.assertGreater(v["fps"], 0)
        self.assertGreater(v["compile_s"], 0)
        self.assertIsNone(v["stages"])
        self.assertIsNone(v["detector_fps"])
        self.assertEqual(v["compiled"], "pipeline")
        table = br.format_table(rep)
        self.assertIn("torch.compile (inductor, pipeline)", table)
        self.assertIn("compile s", table)

    def test_compiled_around_detector_matches_eager(self):
        # any other detector stays a TorchScript call; the code around it is compiled
        with tempfile.TemporaryDirectory() as d:
            det = br.Detector(write_detector(d, TinyDetector(16)))
        cube = br.make_cube(2, 24, 24, 8, seed=32)
        torch.manual_seed(3)
        self.check_same(br.Pipeline("drcnn", det, 8, cube), cube, "around-detector")


class TestCompileFlag(unittest.TestCase):
    def test_eager_report_says_eager(self):
        with tempfile.TemporaryDirectory() as d:
            path = write_detector(d, TinyDetector(16))
            rep = br.run_bench(path, variants=("pca",), batch=1, size=(16, 16), bands=8, threads=1, iters=1,
                               warmup=0, train_iters=0)
        self.assertEqual(rep["peer"], "eager")
        self.assertEqual(rep["torch"], torch.__version__)
        self.assertNotIn("compile_s", rep["variants"][0])
        self.assertEqual(set(rep["variants"][0]["stages"]), set(br.STAGES))

    def test_compile_needs_torch2(self):
        # on PyTorch < 2.0 (no torch.compile) --compile is one clear error line and exit code 2
        real = br.have_compile
        br.have_compile = lambda: False
        try:
            with tempfile.TemporaryDirectory() as d:
                rc, out, err = run_main(["--detector", write_detector(d, TinyDetector(16)), "--compile",
                                         "--size", "16x16", "--bands", "8", "--iters", "1"])
        finally:
            br.have_compile = real
        self.assertEqual(rc, 2)
        self.assertEqual(out, "")
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn("--compile needs PyTorch >= 2.0", err)
        self.assertIn(torch.__version__, err)

    def test_format_table_compiled_report(self):
        # a compiled report has null stages and detector FPS: the table prints "-" for them
        rep = {"device": "cpu", "threads": 1, "torch": "2.x", "batch": 1, "size": "8x8", "bands": 8,
               "detector": "d.pt", "detector_size": 8, "peer": "compiled", "compiled": "around-detector",
               "compile_note": "detector_name 'x' is not the built-in",
               "variants": [{"variant": "pca", "fps": 3.5, "detector_fps": None, "stages": None,
                             "train_steps_per_s": None, "compile_s": 12.25, "graph_breaks": 2}]}
        table = br.format_table(rep)
        self.assertIn("torch.compile (inductor, around-detector)", table)
        self.assertIn("is not the built-in", table)
        row = [l for l in table.splitlines() if l.startswith("pca")][0].split()
        self.assertEqual(row[1], "3.50")
        self.assertEqual(row[2:10], ["-"] * 8)
        self.assertEqual(row[10:], ["12.25", "2"])


if __name__ == "__main__":
    unittest.main()
