"""Writes a generated labelled scene as .npz (cube H×W×C float32, gt H×W uint8) for the
scene package's tests and experiments: a background of a few smooth endmember spectra with
spatially smooth abundances and noise, and planted objects (small squares) whose spectrum
differs subtly from the background, mixed at the object edges.

usage: gen_scene.py OUT.npz H W C N_OBJECTS SEED [CONTRAST]
"""
import sys
import numpy as np

out, h, w, c, nobj, seed = sys.argv[1], *map(int, sys.argv[2:7])
contrast = float(sys.argv[7]) if len(sys.argv) > 7 else 0.15
rng = np.random.default_rng(seed)
x = np.linspace(0, 1, c)
ends = np.stack([0.3 + 0.2 * np.sin(2 * np.pi * (x * f + p)) for f, p in rng.uniform([0.5, 0], [2, 1], (4, 2))])
yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
ab = np.stack([np.exp(np.sin(2 * np.pi * (a * yy + b * xx) + ph)) for a, b, ph in rng.uniform([-2, -2, 0], [2, 2, 6], (4, 3))], -1)
ab /= ab.sum(-1, keepdims=True)
cube = ab @ ends
gt = np.zeros((h, w), np.uint8)
target = 0.3 + 0.2 * np.cos(2 * np.pi * (x * rng.uniform(3, 5) + rng.uniform()))
placed = 0
tries = 0
while placed < nobj and tries < 10000:
    tries += 1
    s = int(rng.integers(1, 5))
    r, q = int(rng.integers(1, h - s - 1)), int(rng.integers(1, w - s - 1))
    if gt[r - 1:r + s + 1, q - 1:q + s + 1].any():
        continue
    gt[r:r + s, q:q + s] = 1
    frac = rng.uniform(0.5, 1.0)
    cube[r:r + s, q:q + s] = (1 - contrast * frac) * cube[r:r + s, q:q + s] + contrast * frac * target
    placed += 1
cube = cube + rng.normal(0, 0.004, cube.shape)
np.savez(out, cube=cube.astype(np.float32), gt=gt)
print(placed)
