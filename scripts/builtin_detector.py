"""builtin_detector.py: spectraclip's built-in zero-shot detector as an eager nn.Module.

The Go program generates the built-in detector itself, as TorchScript source compiled by
LibTorch (nodes/detect/builtin.go, `spectraclip export-detector --builtin`). torch.export,
and so AOTInductor, needs an eager module: BuiltinDetector is the same computation, op for
op, rebuilt from the attributes and buffers of the TorchScript file that Go writes (image
size, window scales, ridge, CLIP mean/std), so that both give the same scores. Keep it in
step with builtinSource in nodes/detect/builtin.go; the AOTI round-trip test in
nodes/detect compares the two on fresh inputs.
"""

from typing import Dict, List, Sequence, Tuple

import torch
from torch import Tensor, nn

# The TorchScript attributes that are the detector contract's metadata.
CONTRACT_ATTRS = ("image_size", "backbone", "prompt", "weight_name", "detector_name", "contract_version")


class BuiltinDetector(nn.Module):
    """BuiltinDetector scores each pixel by the Mahalanobis distance of its local-mean
    features to the image's own feature mean and covariance (see builtinSource in
    nodes/detect/builtin.go for the why of each step)."""

    def __init__(self, image_size: int, scales: Sequence[int], ridge: float, clip_mean: Tensor, clip_std: Tensor,
                 meta: Dict[str, object]):
        super().__init__()
        self.image_size = int(image_size)
        self.scales = [int(k) for k in scales]
        self.ridge = float(ridge)
        self.register_buffer("clip_mean", clip_mean.detach().clone().reshape(1, 3, 1, 1))
        self.register_buffer("clip_std", clip_std.detach().clone().reshape(1, 3, 1, 1))
        self.meta = dict(meta)

    @staticmethod
    def box_mean(p: Tensor, h: int, w: int, k: int) -> Tensor:
        r = k // 2
        ys = torch.arange(h, device=p.device)
        xs = torch.arange(w, device=p.device)
        y0 = (ys - r).clamp_min(0)
        y1 = (ys + r + 1).clamp_max(h)
        x0 = (xs - r).clamp_min(0)
        x1 = (xs + r + 1).clamp_max(w)
        a = p.index_select(2, y1) - p.index_select(2, y0)
        s = a.index_select(3, x1) - a.index_select(3, x0)
        cnt = ((y1 - y0).view(1, 1, h, 1) * (x1 - x0).view(1, 1, 1, w)).to(p.dtype)
        return s / cnt

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        b = x.size(0)
        h = x.size(2)
        w = x.size(3)
        xf = x.float()
        rgb = xf * self.clip_std.float() + self.clip_mean.float()
        p = torch.constant_pad_nd(rgb.double().cumsum(2).cumsum(3), [1, 0, 1, 0], 0.0)
        base = self.box_mean(p, h, w, 3)
        feats: List[Tensor] = [base]
        for k in self.scales:
            feats.append(base - self.box_mean(p, h, w, k))
        f = torch.cat(feats, 1).float()
        nf = f.size(1)
        n = h * w
        f = f.reshape(b, nf, n)
        mu = f.mean(2, True)
        fc = f - mu
        cov = torch.bmm(fc, fc.transpose(1, 2)).double() / float(n - 1)
        tr = torch.diagonal(cov, 0, -2, -1).mean(-1)
        eye = torch.eye(nf, device=cov.device).to(cov.dtype).unsqueeze(0)
        reg = cov + (tr * self.ridge + 1e-12).view(b, 1, 1) * eye
        inv = torch.linalg.inv(reg).float()
        d = (torch.bmm(inv, fc) * fc).sum(1).clamp_min(0.0)
        score = 1.0 - torch.exp(-d / (2.0 * float(nf)))
        k = max(1, n // 100)
        top, _ = torch.topk(score, k, 1)
        img = top.mean(1)
        return score.reshape(b, h, w).to(x.dtype), img.to(x.dtype)


def from_torchscript(path: str) -> Tuple[BuiltinDetector, torch.jit.ScriptModule]:
    """from_torchscript loads the TorchScript file Go wrote and returns the eager rebuild
    with the loaded module (the reference it must agree with)."""
    ts = torch.jit.load(path, map_location="cpu")
    ts.eval()
    missing = [a for a in CONTRACT_ATTRS + ("scales", "ridge", "clip_mean", "clip_std") if not hasattr(ts, a)]
    if missing:
        raise ValueError(f"{path}: not a built-in detector written by spectraclip export-detector --builtin "
                         f"(no {', '.join(missing)})")
    try:
        scales = [int(s) for s in str(ts.scales).split(",") if s.strip()]
    except ValueError as e:
        raise ValueError(f"{path}: attribute scales {ts.scales!r} is not a comma-separated list of ints") from e
    meta: Dict[str, object] = {a: getattr(ts, a) for a in CONTRACT_ATTRS}
    meta.update(scales=str(ts.scales), ridge=repr(float(ts.ridge)))
    eager = BuiltinDetector(int(ts.image_size), scales, float(ts.ridge), ts.clip_mean, ts.clip_std, meta)
    eager.eval()
    return eager, ts
