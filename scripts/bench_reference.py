#!/usr/bin/python3
"""bench_reference.py: the Python benchmark peer of `spectraclip bench`.

It runs the three inference pipelines of the AdaCLIP workflow (PCA, DRCNN and
Concrete band selection in front of a TorchScript detector) in plain PyTorch
eager mode, written the way a user of the Python reference (cuvis.ai) writes
them: every op allocates its result, the decider uses torch.quantile, the
Gaussian blur is a 2-D conv2d with zero padding, and nothing is fused or
preallocated. It is deliberately *not* optimised beyond what the reference
does, so its figures say what the reference costs, not what PyTorch can do.

With --compile (PyTorch >= 2.0) it is instead the same pipeline under
torch.compile (backend inductor, default mode, dynamic=False): the per-batch
inference forward that the eager peer times (normalise → reduce → detector
pre-processing → detector → post-processing → decide) is compiled once, the
first warm-up call absorbs the compilation (reported as compile_s) and only the
end-to-end FPS is measured (the stages are fused, so stages is null). For the
built-in detector (detector_name "builtin-mahalanobis") the TorchScript module
is replaced by BuiltinDetectorEager, an eager re-implementation of its forward
built from the file's own buffers and attributes, so the whole pipeline
compiles ("compiled": "pipeline"); any other detector stays a TorchScript call
that torch.compile cannot trace, and the code before and after it is compiled
("compiled": "around-detector"). The training benchmark stays eager.

Usage (from the repository root):

    /usr/bin/python3 scripts/bench_reference.py --detector builtin.pt \
        [--variant pca|drcnn|concrete|all] [--batch 4] [--size 256x256] \
        [--bands 61] [--threads N] [--device cpu|cuda] [--half] [--iters 5] \
        [--warmup 1] [--train-iters 3] [--compile] [--json]

The detector contract (same as the Go detector node): forward(x [B,3,S,S]
CLIP-normalised) -> (pixel_scores [B,S,S], image_scores [B]); S is the
module's int attribute `image_size`.

Runs on PyTorch 1.13 (Debian) and 2.x, on the CPU or CUDA; --compile needs 2.x
(and a C++ compiler on the CPU, for inductor's C++ backend).
"""

import argparse
import json
import math
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import builtin_detector as bd  # noqa: E402

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VARIANTS = ("pca", "drcnn", "concrete")
STAGES = ("normalize", "reduce", "detector_pre", "detector", "post", "decide")
EPS = 1e-6
# BUILTIN_NAME is the detector_name of the built-in detector (BuiltinName in nodes/detect/builtin.go).
BUILTIN_NAME = "builtin-mahalanobis"
# BUILTIN_CHECK_ATOL is how far (absolute, on scores in [0,1]) BuiltinDetectorEager may be from the
# TorchScript file on the self-check input before --compile falls back to compiling around the file.
BUILTIN_CHECK_ATOL = 1e-4


# --------------------------------------------------------------------------
# inputs


def parse_size(s):
    """parse_size reads "HxW" into (H, W); a bad value raises ValueError naming it."""
    parts = str(s).lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        h, w = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError("--size %r: want HxW, e.g. 256x256" % (s,)) from None
    if h < 1 or w < 1:
        raise ValueError("--size %r: both sides must be >= 1" % (s,))
    return h, w


def make_cube(batch, h, w, bands, seed=1, device="cpu"):
    """make_cube draws a seeded uniform [0,1) cube [B,H,W,C] float32 (channels-last).

    Drawn on the CPU with its own generator so the same seed gives the same cube
    on every device."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, h, w, bands, generator=g).to(device)


def make_target(batch, h, w, seed=2, frac=0.02, device="cpu"):
    """make_target draws a seeded random anomaly mask [B,H,W,1] bool with ~frac positives."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, h, w, 1, generator=g) < frac).to(device)


# --------------------------------------------------------------------------
# nodes (as the reference writes them)


class MinMaxNormalizer(nn.Module):
    """MinMaxNormalizer is cuvis.ai's running-stats normaliser: one global scalar min
    and max fitted over all elements of the fitting data, output not clamped."""

    def __init__(self, eps=EPS):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_min", torch.tensor(float("nan")))
        self.register_buffer("running_max", torch.tensor(float("nan")))

    @torch.no_grad()
    def fit(self, cube):
        self.running_min = cube.min().detach().clone()
        self.running_max = cube.max().detach().clone()
        return self

    def forward(self, x):
        rng = torch.clamp(self.running_max - self.running_min, min=self.eps)
        return (x - self.running_min) / rng


def per_image_minmax(x, eps=EPS):
    """per_image_minmax normalises every image and channel of x [B,H,W,C] by its own
    min and max over H and W (the reference's per-image MinMaxNormalizer)."""
    mn = torch.amin(x, dim=(1, 2), keepdim=True)
    mx = torch.amax(x, dim=(1, 2), keepdim=True)
    return (x - mn) / torch.clamp(mx - mn, min=eps)


class PCAReducer(nn.Module):
    """PCAReducer is TrainablePCA (frozen) followed by the per-image output normaliser.

    Components are the top-k eigenvectors (rows, descending eigenvalue) of the
    float64 sample covariance of the fitting pixels, from torch.linalg.eigh."""

    def __init__(self, bands, k=3):
        super().__init__()
        self.k = k
        self.register_buffer("mean", torch.zeros(bands))
        self.register_buffer("components", torch.zeros(k, bands))

    @torch.no_grad()
    def fit(self, x):
        pix = x.reshape(-1, x.shape[-1]).double()
        mean = pix.mean(0)
        xc = pix - mean
        cov = xc.T @ xc / (pix.shape[0] - 1)
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)[: self.k]
        self.mean = mean.float()
        self.components = evecs[:, order].T.contiguous().float()
        return self

    def forward(self, x):
        projected = (x - self.mean) @ self.components.T
        return per_image_minmax(projected)


class DRCNNReducer(nn.Module):
    """DRCNNReducer is the LearnableChannelMixer (tutorial-era): a chain of 1×1 convs,
    LeakyReLU between layers (not after the last), per-image min-max and clamp."""

    def __init__(self, scheme=(61, 16, 8, 3), slope=0.1):
        super().__init__()
        layers = []
        for i in range(len(scheme) - 1):
            conv = nn.Conv2d(scheme[i], scheme[i + 1], kernel_size=1, bias=True)
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
            layers.append(conv)
            if i < len(scheme) - 2:
                layers.append(nn.LeakyReLU(slope))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        y = self.net(x.permute(0, 3, 1, 2))
        y = y.permute(0, 2, 3, 1)
        return torch.clamp(per_image_minmax(y), 0.0, 1.0)


def tau_schedule(epoch, max_epochs=20, tau_start=10.0, tau_end=0.1):
    """tau_schedule is the reference's exponential temperature schedule."""
    if max_epochs <= 1:
        return tau_end
    f = min(max(epoch, 0), max_epochs - 1) / (max_epochs - 1)
    return math.exp((1 - f) * math.log(tau_start) + f * math.log(tau_end))


class ConcreteReducer(nn.Module):
    """ConcreteReducer is the Concrete/Gumbel-softmax band selector: soft Gumbel weights
    in training, hard one-hot argmax at inference, rgb = x @ weightsᵀ."""

    def __init__(self, bands, out=3, eps=EPS):
        super().__init__()
        self.eps = eps
        # Seeded random rather than the reference's zeros so the three channels pick
        # different bands (zeros would select band 0 three times).
        self.logits = nn.Parameter(torch.randn(out, bands))
        self.tau = 10.0

    def weights(self):
        if self.training:
            u = torch.rand_like(self.logits)
            g = -torch.log(-torch.log(u + self.eps) + self.eps)
            return F.softmax((self.logits + g) / self.tau, dim=-1)
        idx = torch.argmax(self.logits, dim=-1)
        return F.one_hot(idx, self.logits.shape[-1]).to(self.logits.dtype)

    def forward(self, x):
        return torch.einsum("bhwc,kc->bhwk", x, self.weights())


def gaussian_kernel2d(sigma, device, dtype=torch.float32):
    """gaussian_kernel2d builds the reference's normalised 2-D Gaussian of side
    2·(int(3σ)+1)+1 (rebuilt at every call, as the reference does)."""
    k = 2 * (int(3 * sigma) + 1) + 1
    ax = torch.arange(k, device=device, dtype=dtype) - (k // 2)
    g1 = torch.exp(-(ax ** 2) / (2 * sigma * sigma))
    g2 = g1[:, None] * g1[None, :]
    return g2 / g2.sum()


def detector_name(module):
    """detector_name returns a detector module's string attribute detector_name, or None."""
    try:
        name = module.detector_name
    except (AttributeError, RuntimeError):
        return None
    return name if isinstance(name, str) else None


class BuiltinDetectorEager(bd.BuiltinDetector):
    """BuiltinDetectorEager is the built-in detector's forward (builtinSource in
    nodes/detect/builtin.go) in eager PyTorch, so that torch.compile can trace it: the same
    module the AOTInductor exporter compiles (builtin_detector.BuiltinDetector), built from a
    loaded TorchScript built-in detector: buffers clip_mean and clip_std and attributes ridge,
    scales ("3,7,15"), image_size and the contract metadata are copied from the file, so it
    always matches the file it replaces."""

    def __init__(self, scripted):
        name = detector_name(scripted)
        if name != BUILTIN_NAME:
            raise ValueError("BuiltinDetectorEager: detector_name %r is not the built-in %r" % (name, BUILTIN_NAME))
        try:
            mean = scripted.clip_mean.detach().clone().float()
            std = scripted.clip_std.detach().clone().float()
            ridge = float(scripted.ridge)
            scales = tuple(int(k) for k in str(scripted.scales).split(","))
            size = int(scripted.image_size)
        except (AttributeError, RuntimeError, TypeError, ValueError) as e:
            raise ValueError("BuiltinDetectorEager: the built-in detector lacks a buffer or attribute (%s)" % e) from None
        if tuple(mean.shape) != (1, 3, 1, 1) or tuple(std.shape) != (1, 3, 1, 1):
            raise ValueError("BuiltinDetectorEager: clip_mean/clip_std are %s/%s, want [1,3,1,1]" % (
                list(mean.shape), list(std.shape)))
        meta = {a: getattr(scripted, a) for a in bd.CONTRACT_ATTRS if hasattr(scripted, a)}
        super().__init__(size, scales, ridge, mean, std, meta)
        self.scales = scales
        self.detector_name = name
        for a in ("backbone", "prompt", "weight_name", "contract_version"):
            if hasattr(scripted, a):
                setattr(self, a, getattr(scripted, a))


class Detector:
    """Detector wraps a contract TorchScript module with the reference AdaCLIPDetector's
    torch preprocessing (float path) and post-processing."""

    def __init__(self, path, device="cpu", half=False, sigma=2.0):
        self.module = torch.jit.load(path, map_location=device)
        self.module.eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        try:
            self.size = int(self.module.image_size)
        except (AttributeError, RuntimeError, TypeError, ValueError):
            raise ValueError("detector %s: module has no int attribute image_size" % path) from None
        if self.size < 1:
            raise ValueError("detector %s: image_size %d must be positive" % (path, self.size))
        self.device = torch.device(device)
        self.half = bool(half) and self.device.type == "cuda"
        if self.half:
            self.module.half()
        self.sigma = sigma
        self.name = detector_name(self.module)

    def eager_builtin(self):
        """eager_builtin returns (BuiltinDetectorEager of this detector, None), or (None, why) when
        the module is not the built-in detector or the eager copy does not reproduce it: both
        are run on one seeded CLIP-normalised input [1,3,S,S] and must agree within
        BUILTIN_CHECK_ATOL on the pixel and image scores."""
        if self.name != BUILTIN_NAME:
            return None, "detector_name %r is not the built-in %r" % (self.name, BUILTIN_NAME)
        try:
            eager = BuiltinDetectorEager(self.module).to(self.device)
        except ValueError as e:
            return None, str(e)
        eager.eval()
        g = torch.Generator().manual_seed(12345)
        x = torch.rand(1, self.size, self.size, 3, generator=g).to(self.device)
        with torch.no_grad():
            x = self.preprocess(x)
            if self.half:
                x = x.half()
            want_pix, want_img = self.module(x)
            got_pix, got_img = eager(x)
        diff = max((got_pix.float() - want_pix.float()).abs().max().item(),
                   (got_img.float() - want_img.float()).abs().max().item())
        if not diff <= BUILTIN_CHECK_ATOL:
            return None, "BuiltinDetectorEager differs from the file by %.3g (> %g) on the check input" % (
                diff, BUILTIN_CHECK_ATOL)
        if self.half:
            eager.half()
        return eager, None

    def preprocess(self, rgb):
        x = rgb
        if x.max() <= 1.0:
            x = x * 255.0
        x = torch.clamp(x, 0.0, 255.0)
        x = x.permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False, antialias=True)
        if x.max() > 1.0:
            x = x / 255.0
        mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    def run(self, x, module=None):
        """run calls the detector module (or module, a stand-in such as BuiltinDetectorEager)."""
        m = self.module if module is None else module
        if self.half:
            with torch.autocast("cuda", dtype=torch.float16):
                pix, img = m(x.half())
            return pix.float(), img.float()
        return m(x)

    def postprocess(self, pix, h, w):
        m = pix.unsqueeze(1).float()
        if self.sigma > 0:
            kern = gaussian_kernel2d(self.sigma, m.device)
            m = F.conv2d(m, kern[None, None], padding=kern.shape[-1] // 2)
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        return m.squeeze(1)[..., None]

    def __call__(self, rgb):
        h, w = rgb.shape[1], rgb.shape[2]
        pix, img = self.run(self.preprocess(rgb))
        return self.postprocess(pix, h, w), img


def quantile_decide(scores, q=0.99):
    """quantile_decide is QuantileBinaryDecider: one torch.quantile threshold per image
    over its H·W·C values, decisions = scores >= threshold."""
    b = scores.shape[0]
    thr = torch.quantile(scores.reshape(b, -1), q, dim=1)
    return scores >= thr.view(b, *([1] * (scores.dim() - 1)))


def iou_loss_minmax(pred, target, smooth=EPS):
    """iou_loss_minmax is IoULoss(normalize_method="minmax"): one min/max over the whole
    batch, one soft IoU over the whole batch."""
    mn, mx = pred.min(), pred.max()
    if mx > mn:
        p = (pred - mn) / (mx - mn + smooth)
    else:
        p = torch.full_like(pred, 0.5)
    t = target.to(p.dtype)
    inter = (p * t).sum()
    union = p.sum() + t.sum() - inter
    return 1.0 - (inter + smooth) / (union + smooth)


# --------------------------------------------------------------------------
# pipelines


class Pipeline:
    """Pipeline is one variant: normaliser → reducer → detector → decider."""

    def __init__(self, variant, detector, bands, fit_cube, seed=0, quantile=0.99):
        if variant not in VARIANTS:
            raise ValueError("unknown variant %r (want one of %s)" % (variant, ", ".join(VARIANTS)))
        dev = fit_cube.device
        torch.manual_seed(seed)
        self.variant = variant
        self.detector = detector
        self.quantile = quantile
        self.normalizer = MinMaxNormalizer().to(dev).fit(fit_cube)
        if variant == "pca":
            self.reducer = PCAReducer(bands).to(dev)
            with torch.no_grad():
                self.reducer.fit(self.normalizer(fit_cube))
        elif variant == "drcnn":
            self.reducer = DRCNNReducer((bands, 16, 8, 3), slope=0.1).to(dev)
        else:
            self.reducer = ConcreteReducer(bands).to(dev)
        self.reducer.eval()

    def trainable(self):
        return [p for p in self.reducer.parameters() if p.requires_grad]

    def reduce(self, cube):
        return self.reducer(self.normalizer(cube))

    def forward(self, cube):
        """forward runs the whole inference pipeline; returns (scores, image_scores, decisions)."""
        rgb = self.reduce(cube)
        scores, img = self.detector(rgb)
        return scores, img, quantile_decide(scores, self.quantile)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bench_inference(pipe, cube, iters, warmup):
    """bench_inference returns (fps, stages, detector_fps): end-to-end frames/s, mean
    seconds per batch per stage, and frames/s of the detector alone on the reduced input."""
    dev = cube.device
    b, h, w = cube.shape[0], cube.shape[1], cube.shape[2]
    with torch.no_grad():
        for _ in range(warmup):
            pipe.forward(cube)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            pipe.forward(cube)
        _sync(dev)
        fps = b * iters / (time.perf_counter() - t0)

        stages = dict.fromkeys(STAGES, 0.0)
        det = pipe.detector
        for _ in range(iters):
            mark = time.perf_counter()

            def lap(name):
                nonlocal mark
                _sync(dev)
                now = time.perf_counter()
                stages[name] += now - mark
                mark = now

            x = pipe.normalizer(cube)
            lap("normalize")
            rgb = pipe.reducer(x)
            lap("reduce")
            pre = det.preprocess(rgb)
            lap("detector_pre")
            pix, _ = det.run(pre)
            lap("detector")
            scores = det.postprocess(pix, h, w)
            lap("post")
            quantile_decide(scores, pipe.quantile)
            lap("decide")
        stages = {k: v / iters for k, v in stages.items()}

        rgb = pipe.reduce(cube)
        for _ in range(warmup):
            det(rgb)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            det(rgb)
        _sync(dev)
        det_fps = b * iters / (time.perf_counter() - t0)
    return fps, stages, det_fps


def have_compile():
    """have_compile tells whether this PyTorch has torch.compile (2.0 and later)."""
    return callable(getattr(torch, "compile", None))


def _compile(fn):
    return torch.compile(fn, backend="inductor", dynamic=False)


class CompiledInference:
    """CompiledInference is a pipeline's per-batch inference forward (what bench_inference
    times: normalise → reduce → detector pre-processing → detector → post-processing →
    decide) under torch.compile(backend="inductor", dynamic=False); calling it returns
    (scores, image_scores, decisions) as Pipeline.forward does.

    mode is "pipeline" when the detector is the built-in one: its TorchScript module is
    replaced by BuiltinDetectorEager and the whole forward is one compiled function. Otherwise
    mode is "around-detector": the TorchScript call stays as it is (torch.compile cannot trace
    a ScriptModule) and the code before it and after it are compiled separately; note says why.
    Compilation happens lazily, on the first call."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.module, self.note = pipe.detector.eager_builtin()
        if self.module is not None:
            self.mode = "pipeline"
            self._whole = _compile(self._whole_fn)
        else:
            self.mode = "around-detector"
            self._pre = _compile(self._pre_fn)
            self._post = _compile(self._post_fn)

    def _whole_fn(self, cube):
        pipe, det = self.pipe, self.pipe.detector
        h, w = cube.shape[1], cube.shape[2]
        rgb = pipe.reducer(pipe.normalizer(cube))
        pix, img = det.run(det.preprocess(rgb), module=self.module)
        scores = det.postprocess(pix, h, w)
        return scores, img, quantile_decide(scores, pipe.quantile)

    def _pre_fn(self, cube):
        pipe = self.pipe
        return pipe.detector.preprocess(pipe.reducer(pipe.normalizer(cube)))

    def _post_fn(self, pix, h, w):
        scores = self.pipe.detector.postprocess(pix, h, w)
        return scores, quantile_decide(scores, self.pipe.quantile)

    def __call__(self, cube):
        if self.mode == "pipeline":
            return self._whole(cube)
        pix, img = self.pipe.detector.run(self._pre(cube))
        scores, dec = self._post(pix, cube.shape[1], cube.shape[2])
        return scores, img, dec


def _graph_breaks():
    """_graph_breaks returns how many graph breaks TorchDynamo has counted so far (None if unknown)."""
    try:
        from torch._dynamo.utils import counters
        return int(sum(counters["graph_break"].values()))
    except Exception:  # private API: absent or changed in this version
        return None


def bench_inference_compiled(pipe, cube, iters, warmup):
    """bench_inference_compiled returns (fps, info): end-to-end frames/s of the compiled forward
    and a dict with compile_s (wall time of the first call: compilation plus one run),
    compiled (CompiledInference.mode), compile_note and graph_breaks. The first of the warmup
    calls (at least one) compiles; the timed calls run the compiled code only."""
    dev = cube.device
    b = cube.shape[0]
    from torch import _dynamo  # PyTorch >= 2.0
    _dynamo.reset()  # every variant compiles from scratch (the on-disk inductor cache stays)
    breaks0 = _graph_breaks()
    comp = CompiledInference(pipe)
    with torch.no_grad():
        _sync(dev)
        t0 = time.perf_counter()
        comp(cube)
        _sync(dev)
        compile_s = time.perf_counter() - t0
        for _ in range(max(warmup, 1) - 1):
            comp(cube)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(iters):
            comp(cube)
        _sync(dev)
        fps = b * iters / (time.perf_counter() - t0)
    breaks1 = _graph_breaks()
    info = {"compile_s": compile_s, "compiled": comp.mode, "compile_note": comp.note,
            "graph_breaks": None if breaks0 is None or breaks1 is None else breaks1 - breaks0}
    return fps, info


def train_step(pipe, opt, cube, target, step):
    """train_step runs one gradient step (normaliser → reducer → detector with autograd →
    IoU loss → backward → AdamW) and returns the loss."""
    pipe.reducer.train()
    if isinstance(pipe.reducer, ConcreteReducer):
        pipe.reducer.tau = tau_schedule(step, max_epochs=20)
    with torch.enable_grad():
        rgb = pipe.reduce(cube)
        scores, _ = pipe.detector(rgb)
        loss = iou_loss_minmax(scores, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    pipe.reducer.eval()
    return loss.detach()


def bench_train(pipe, cube, target, iters, warmup=1, lr=1e-3):
    """bench_train returns training steps per second (None for a variant with nothing to train)."""
    params = pipe.trainable()
    if not params or iters < 1:
        return None
    opt = torch.optim.AdamW(params, lr=lr)
    for i in range(max(warmup, 1)):
        train_step(pipe, opt, cube, target, i)
    _sync(cube.device)
    t0 = time.perf_counter()
    for i in range(iters):
        train_step(pipe, opt, cube, target, i)
    _sync(cube.device)
    return iters / (time.perf_counter() - t0)


def run_bench(detector_path, variants=VARIANTS, batch=4, size=(256, 256), bands=61, threads=0,
              device="cpu", half=False, iters=5, warmup=1, train_iters=3, sigma=2.0, quantile=0.99, seed=0,
              compile=False):
    """run_bench measures every variant and returns the JSON-able report.

    With compile, inference runs under torch.compile (bench_inference_compiled; warmup is
    raised to at least 1) and training stays eager."""
    if threads and threads > 0:
        torch.set_num_threads(threads)
    if batch < 1 or bands < 1 or iters < 1 or warmup < 0 or train_iters < 0:
        raise ValueError("batch, bands and iters must be >= 1, warmup and train-iters >= 0")
    if compile and not have_compile():
        raise ValueError("--compile needs PyTorch >= 2.0 (torch.compile); this is torch %s" % torch.__version__)
    if compile:
        warmup = max(warmup, 1)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device %s: CUDA is not available in this PyTorch" % device)
    if half and dev.type != "cuda":
        print("bench_reference: --half applies on CUDA only (the reference falls back to fp32); running fp32",
              file=sys.stderr)
    h, w = size
    det = Detector(detector_path, device=dev, half=half, sigma=sigma)
    cube = make_cube(batch, h, w, bands, seed=seed + 1, device=dev)
    target = make_target(batch, h, w, seed=seed + 2, device=dev)
    rep = {"variants": [], "threads": torch.get_num_threads(), "device": str(dev), "torch": torch.__version__,
           "batch": batch, "size": "%dx%d" % (h, w), "bands": bands, "detector": detector_path,
           "half": det.half, "detector_size": det.size, "detector_name": det.name,
           "peer": "compiled" if compile else "eager", "warmup": warmup, "train": "eager"}
    if compile:
        rep["compile"] = {"backend": "inductor", "mode": "default", "dynamic": False}
    for v in variants:
        pipe = Pipeline(v, det, bands, cube, seed=seed, quantile=quantile)
        if compile:
            fps, info = bench_inference_compiled(pipe, cube, iters, warmup)
            row = {"variant": v, "fps": fps, "detector_fps": None, "stages": None}
            row.update(info)
            rep["compiled"] = info["compiled"]
            rep["compile_note"] = info["compile_note"]
        else:
            fps, stages, det_fps = bench_inference(pipe, cube, iters, warmup)
            row = {"variant": v, "fps": fps, "detector_fps": det_fps, "stages": stages}
        row["train_steps_per_s"] = bench_train(pipe, cube, target, train_iters, warmup=warmup)
        rep["variants"].append(row)
        del pipe
    # the process's peak resident set (run one variant per process for a variant's own)
    rep["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    rep["allocator"] = allocator()
    return rep


def allocator():
    """allocator names the malloc preloaded into this process ("tcmalloc", "jemalloc") or "glibc"."""
    pre = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc"):
        if name in pre:
            return name
    return "glibc"


def format_table(rep):
    """format_table renders a report as a plain-text table; a figure that is null (the stages
    and detector FPS of a compiled run, the training rate of a variant with nothing to train)
    prints as "-"."""
    compiled = rep.get("peer") == "compiled"
    peer = "eager"
    if compiled:
        peer = "torch.compile (inductor, %s)" % rep.get("compiled", "?")
    lines = ["device %s · %d threads · torch %s · %s · batch %d × %s × %d bands · detector %s (S=%d)%s" % (
        rep["device"], rep["threads"], rep["torch"], peer, rep["batch"], rep["size"], rep["bands"], rep["detector"],
        rep["detector_size"], " · fp16" if rep.get("half") else "")]
    if compiled:
        lines.append("stages are fused: only the end-to-end FPS is measured; training (train st/s) runs eager")
        if rep.get("compile_note"):
            lines.append("compiled around the detector: %s" % rep["compile_note"])
    lines.append("")

    def fmt(v, width, scale=1.0):
        return "%*s" % (width, "-") if v is None else "%*.2f" % (width, v * scale)

    hdr = "%-9s %9s %12s %10s " % ("variant", "FPS", "detector FPS", "train st/s")
    hdr += " ".join("%10s" % (s.replace("detector_pre", "pre").replace("detector", "det") + " ms") for s in STAGES)
    if compiled:
        hdr += " %10s %7s" % ("compile s", "breaks")
    lines.append(hdr)
    for v in rep["variants"]:
        stages = v.get("stages") or {}
        row = "%-9s %s %s %s " % (v["variant"], fmt(v["fps"], 9), fmt(v.get("detector_fps"), 12),
                                  fmt(v.get("train_steps_per_s"), 10))
        row += " ".join(fmt(stages.get(s), 10, 1000) for s in STAGES)
        if compiled:
            gb = v.get("graph_breaks")
            row += " %s %7s" % (fmt(v.get("compile_s"), 10), "-" if gb is None else gb)
        lines.append(row)
    return "\n".join(lines) + "\n"


def build_parser():
    p = argparse.ArgumentParser(description="Python (eager PyTorch, or torch.compile with --compile) peer of "
                                            "`spectraclip bench`.")
    p.add_argument("--detector", required=True, help="TorchScript detector file (contract v1)")
    p.add_argument("--variant", default="all", choices=VARIANTS + ("all",))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", default="256x256", help="HxW")
    p.add_argument("--bands", type=int, default=61)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave torch's default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--half", action="store_true", help="run the detector module in fp16 (CUDA only)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed calls before timing (with --compile at least 1: the first one compiles)")
    p.add_argument("--train-iters", type=int, default=3,
                   help="training steps to time (0 = skip); training always runs eager, also with --compile")
    p.add_argument("--sigma", type=float, default=2.0, help="Gaussian blur sigma of the scores")
    p.add_argument("--quantile", type=float, default=0.99, help="QuantileBinaryDecider quantile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true",
                   help="run the inference forward under torch.compile (inductor, default mode, dynamic=False; "
                        "PyTorch >= 2.0): compiled once in the first warm-up call (compile_s), only the "
                        "end-to-end FPS is timed; the whole pipeline for the built-in detector, around the "
                        "TorchScript call for any other. Training stays eager")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.compile and not have_compile():
        print("bench_reference: --compile needs PyTorch >= 2.0 (torch.compile); this is torch %s" % torch.__version__,
              file=sys.stderr)
        return 2
    try:
        size = parse_size(args.size)
        if not 0.0 <= args.quantile <= 1.0:
            raise ValueError("--quantile %g must be in [0,1]" % args.quantile)
        variants = VARIANTS if args.variant == "all" else (args.variant,)
        rep = run_bench(args.detector, variants=variants, batch=args.batch, size=size, bands=args.bands,
                        threads=args.threads, device=args.device, half=args.half, iters=args.iters,
                        warmup=args.warmup, train_iters=args.train_iters, sigma=args.sigma,
                        quantile=args.quantile, seed=args.seed, compile=args.compile)
    except (ValueError, RuntimeError, OSError) as e:
        msg = str(e)
        if args.compile:  # torch.compile's errors end in paragraphs of hints: keep the reason
            msg = next((line for line in msg.splitlines() if line.strip()), msg)
        print("bench_reference: %s" % msg, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        sys.stdout.write(format_table(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
