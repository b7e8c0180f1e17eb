#!/usr/bin/python3
"""Independent reader of a synthetic Lentils directory (numpy only).

Reads DIR/frames/*.hdr + data files (ENVI: header parsed here, data with numpy.fromfile) and
DIR/annotations.json (COCO: polygons filled with a per-pixel even-odd crossing test at pixel
centres, compressed and uncompressed RLE decoded here), without any code from the Go loader,
and prints per frame: shape, stone pixel count, class histogram, the float64 sum of the cube
and a position-weighted checksum (so interleave or axis mix-ups show up).

Usage: /usr/bin/python3 scripts/check_synth.py DIR [--json]
"""
import glob
import json
import os
import re
import sys

import numpy as np

DTYPES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4", 14: "i8", 15: "u8"}


def read_header(path):
    text = open(path, encoding="utf-8").read()
    lines = text.replace("\r\n", "\n").split("\n")
    if lines[0].strip().upper() != "ENVI":
        raise ValueError("%s: not an ENVI header" % path)
    fields, i = {}, 1
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith(";") or "=" not in line:
            continue
        key, val = line.split("=", 1)
        key, val = " ".join(key.lower().split()), val.strip()
        if val.startswith("{"):
            while "}" not in val:
                val += "\n" + lines[i]
                i += 1
            val = val[1:val.index("}")].strip()
        fields[key] = val
    return fields


def read_cube(hdr_path):
    h = read_header(hdr_path)
    W, H, C = int(h["samples"]), int(h["lines"]), int(h["bands"])
    dt = (">" if int(h.get("byte order", "0")) == 1 else "<") + DTYPES[int(h["data type"])]
    base = hdr_path[:-4]
    data_path = next(p for p in (base + ".img", base + ".dat", base + ".raw", base) if os.path.isfile(p))
    raw = np.fromfile(data_path, dtype=dt, offset=int(h.get("header offset", "0")))
    il = h.get("interleave", "bsq").lower()
    if il == "bsq":
        cube = raw.reshape(C, H, W).transpose(1, 2, 0)
    elif il == "bil":
        cube = raw.reshape(H, C, W).transpose(0, 2, 1)
    else:
        cube = raw.reshape(H, W, C)
    return cube.astype(np.float64)


def rle_from_string(s):
    counts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_mask(seg, h, w):
    counts = seg["counts"]
    if isinstance(counts, str):
        counts = rle_from_string(counts)
    flat = np.zeros(h * w, dtype=bool)
    pos = 0
    for k, n in enumerate(counts):
        if k % 2 == 1:
            flat[pos:pos + n] = True
        pos += n
    return flat.reshape((h, w), order="F")


def polygon_mask(xy, h, w):
    px, py = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    xs, ys = np.asarray(xy[0::2], dtype=np.float64), np.asarray(xy[1::2], dtype=np.float64)
    inside = np.zeros((h, w), dtype=bool)
    n = len(xs)
    for i in range(n):
        j = (i - 1) % n
        xi, yi, xj, yj = xs[i], ys[i], xs[j], ys[j]
        if yi == yj:
            continue
        crosses = (yi > py) != (yj > py)
        xint = (xj - xi) * (py - yi) / (yj - yi) + xi
        inside ^= crosses & (px < xint)
    return inside


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    root = sys.argv[1]
    coco = json.load(open(os.path.join(root, "annotations.json")))
    images = {im["id"]: im for im in coco["images"]}
    frames = []
    for hdr in sorted(glob.glob(os.path.join(root, "frames", "*.hdr"))):
        fid = int(re.search(r"(\d+)\.hdr$", hdr).group(1))
        cube = read_cube(hdr)
        H, W, C = cube.shape
        labels = np.zeros((H, W), dtype=np.int64)
        if fid in images:
            for a in coco["annotations"]:
                if a["image_id"] != fid:
                    continue
                seg = a["segmentation"]
                if isinstance(seg, dict):
                    m = rle_mask(seg, H, W)
                else:
                    m = np.zeros((H, W), dtype=bool)
                    for poly in seg:
                        if len(poly) >= 6:
                            m |= polygon_mask(poly, H, W)
                labels[m] = a["category_id"]
        r, c, b = np.meshgrid(np.arange(H), np.arange(W), np.arange(C), indexing="ij")
        weights = ((r * 31 + c * 17 + b * 7) % 13 + 1).astype(np.float64)
        frames.append({
            "id": fid,
            "shape": [H, W, C],
            "stone_pixels": int((labels == 3).sum()),
            "histogram": [int((labels == k).sum()) for k in range(5)],
            "sum": float(cube.sum()),
            "checksum": float((cube * weights).sum()),
        })
    if "--json" in sys.argv:
        json.dump({"frames": frames}, sys.stdout)
        print()
    else:
        for f in frames:
            print("frame %3d  shape %s  stone pixels %5d  classes %s  sum %.6f  checksum %.6f" % (
                f["id"], "×".join(map(str, f["shape"])), f["stone_pixels"], f["histogram"], f["sum"], f["checksum"]))
        print("%d frames, %d stone pixels in total" % (len(frames), sum(f["stone_pixels"] for f in frames)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
