#!/usr/bin/python3
"""bench_reference.py: the Python benchmark peer of `spectraclip bench`.

It runs the three inference pipelines of the AdaCLIP workflow (PCA, DRCNN and
Concrete band selection in front of a TorchScript detector) in plain PyTorch
eager mode, written the way a user of the Python reference (cuvis.ai) writes
them: every op allocates its result, the decider uses torch.quantile, the
Gaussian blur is a 2-D conv2d with zero padding, and nothing is fused or
preallocated. It is deliberately *not* optimised beyond what the reference
does, so its figures say what the reference costs, not what PyTorch can do.

Usage (from the repository root):

    /usr/bin/python3 scripts/bench_reference.py --detector builtin.pt \
        [--variant pca|drcnn|concrete|all] [--batch 4] [--size 256x256] \
        [--bands 61] [--threads N] [--device cpu|cuda] [--half] [--iters 5] \
        [--warmup 1] [--train-iters 3] [--json]

The detector contract (same as the Go detector node): forward(x [B,3,S,S]
CLIP-normalised) -> (pixel_scores [B,S,S], image_scores [B]); S is the
module's int attribute `image_size`.

Runs on PyTorch 1.13 (Debian) and 2.x, on the CPU or CUDA.
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

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VARIANTS = ("pca", "drcnn", "concrete")
STAGES = ("normalize", "reduce", "detector_pre", "detector", "post", "decide")
EPS = 1e-6


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

    def run(self, x):
        if self.half:
            with torch.autocast("cuda", dtype=torch.float16):
                pix, img = self.module(x.half())
            return pix.float(), img.float()
        return self.module(x)

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
              device="cpu", half=False, iters=5, warmup=1, train_iters=3, sigma=2.0, quantile=0.99, seed=0):
    """run_bench measures every variant and returns the JSON-able report."""
    if threads and threads > 0:
        torch.set_num_threads(threads)
    if batch < 1 or bands < 1 or iters < 1 or warmup < 0 or train_iters < 0:
        raise ValueError("batch, bands and iters must be >= 1, warmup and train-iters >= 0")
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
           "half": det.half, "detector_size": det.size}
    for v in variants:
        pipe = Pipeline(v, det, bands, cube, seed=seed, quantile=quantile)
        fps, stages, det_fps = bench_inference(pipe, cube, iters, warmup)
        steps = bench_train(pipe, cube, target, train_iters, warmup=warmup)
        rep["variants"].append({"variant": v, "fps": fps, "detector_fps": det_fps, "train_steps_per_s": steps,
                                "stages": stages})
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
    """format_table renders a report as a plain-text table."""
    lines = ["device %s · %d threads · torch %s · batch %d × %s × %d bands · detector %s (S=%d)%s" % (
        rep["device"], rep["threads"], rep["torch"], rep["batch"], rep["size"], rep["bands"], rep["detector"],
        rep["detector_size"], " · fp16" if rep.get("half") else ""), ""]
    hdr = "%-9s %9s %12s %10s " % ("variant", "FPS", "detector FPS", "train st/s")
    hdr += " ".join("%10s" % (s.replace("detector_pre", "pre").replace("detector", "det") + " ms") for s in STAGES)
    lines.append(hdr)
    for v in rep["variants"]:
        steps = v["train_steps_per_s"]
        row = "%-9s %9.2f %12.2f %10s " % (v["variant"], v["fps"], v["detector_fps"],
                                           "-" if steps is None else "%.2f" % steps)
        row += " ".join("%10.2f" % (v["stages"][s] * 1000) for s in STAGES)
        lines.append(row)
    return "\n".join(lines) + "\n"


def build_parser():
    p = argparse.ArgumentParser(description="Python (eager PyTorch) peer of `spectraclip bench`.")
    p.add_argument("--detector", required=True, help="TorchScript detector file (contract v1)")
    p.add_argument("--variant", default="all", choices=VARIANTS + ("all",))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", default="256x256", help="HxW")
    p.add_argument("--bands", type=int, default=61)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave torch's default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--half", action="store_true", help="run the detector module in fp16 (CUDA only)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--train-iters", type=int, default=3)
    p.add_argument("--sigma", type=float, default=2.0, help="Gaussian blur sigma of the scores")
    p.add_argument("--quantile", type=float, default=0.99, help="QuantileBinaryDecider quantile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        size = parse_size(args.size)
        if not 0.0 <= args.quantile <= 1.0:
            raise ValueError("--quantile %g must be in [0,1]" % args.quantile)
        variants = VARIANTS if args.variant == "all" else (args.variant,)
        rep = run_bench(args.detector, variants=variants, batch=args.batch, size=size, bands=args.bands,
                        threads=args.threads, device=args.device, half=args.half, iters=args.iters,
                        warmup=args.warmup, train_iters=args.train_iters, sigma=args.sigma,
                        quantile=args.quantile, seed=args.seed)
    except (ValueError, RuntimeError, OSError) as e:
        print("bench_reference: %s" % e, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        sys.stdout.write(format_table(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
