#!/usr/bin/python3
"""Writes the small MAT v5 and PNG fixtures under dataset/testdata/ and their expected values.

Run from the repository root with /usr/bin/python3 (needs numpy and scipy):

    /usr/bin/python3 dataset/testdata/gen_fixtures.py

scipy.io.savemat writes the plain and compressed files, so the Go reader is checked against an
independent writer. A few layouts scipy never produces (a double stored as uint8, big-endian
"MI" files, a complex array, a v7.3 header) are written byte by byte below, following the
MAT-file format description. PNG masks are written with zlib + struct.
"""
import json
import os
import struct
import zlib

import numpy as np
import scipy.io

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "mat")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20261129)
expected = {}


def record(fname, name, arr, cls, dtype):
    expected.setdefault(fname, {})[name] = {
        "shape": list(arr.shape),
        "class": cls,
        "dtype": dtype,
        "values": [float(v) for v in np.asarray(arr, dtype=np.float64).ravel(order="C")],
    }


# --- scipy-written files: every numeric class, 2-D and 3-D, plus variables to skip ---------
ranges = {
    "int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535),
    "int32": (-(1 << 24), 1 << 24), "uint32": (0, 1 << 24), "int64": (-(1 << 24), 1 << 24),
    "uint64": (0, 1 << 24),
}
cls_of = {"float32": "single", "float64": "double"}
vars_ = {}
for dt, (lo, hi) in ranges.items():
    vars_["v_" + dt] = rng.integers(lo, hi, size=(3, 4, 5), endpoint=True).astype(dt)
vars_["v_float32"] = (rng.standard_normal((4, 3)) * 100).astype(np.float32)
vars_["v_float64"] = (rng.integers(-1000, 1000, size=(2, 3, 4)) / 8.0).astype(np.float64)
vars_["cube"] = rng.integers(0, 4096, size=(6, 5, 7)).astype(np.uint16)
vars_["gt"] = (rng.random((6, 5)) < 0.2).astype(np.uint8)
vars_["row"] = np.arange(7, dtype=np.float64).reshape(1, 7)
skip = {"label": "a char array", "cellv": np.array([1, "x"], dtype=object), "st": {"a": 1.0}}
for compressed in (False, True):
    fname = "scipy_%s.mat" % ("compressed" if compressed else "plain")
    scipy.io.savemat(os.path.join(OUT, fname), {**vars_, **skip}, do_compression=compressed)
    for k, v in vars_.items():
        record(fname, k, v, cls_of.get(str(v.dtype), str(v.dtype)), str(v.dtype))


# --- hand-written elements -------------------------------------------------------------------
MI = {"int8": 1, "uint8": 2, "int16": 3, "uint16": 4, "int32": 5, "uint32": 6, "single": 7,
      "double": 9, "int64": 12, "uint64": 13}
MX = {"double": 6, "single": 7, "int8": 8, "uint8": 9, "int16": 10, "uint16": 11, "int32": 12,
      "uint32": 13, "int64": 14, "uint64": 15}
NP = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
      "single": "f4", "double": "f8", "int64": "i8", "uint64": "u8"}


def element(bo, typ, payload, allow_small=True):
    n = len(payload)
    if allow_small and n <= 4:
        return struct.pack(bo + "HH", typ, n) + payload + b"\0" * (4 - n) if bo == "<" else \
            struct.pack(bo + "HH", n, typ) + payload + b"\0" * (4 - n)
    return struct.pack(bo + "II", typ, n) + payload + b"\0" * ((-n) % 8)


def matrix(bo, name, arr, cls, stored, imag=None):
    flags = MX[cls] | (0x800 if imag is not None else 0)
    body = element(bo, MI["uint32"], struct.pack(bo + "II", flags, 0), allow_small=False)
    body += element(bo, MI["int32"], struct.pack(bo + "%di" % arr.ndim, *arr.shape), allow_small=False)
    body += element(bo, MI["int8"], name.encode())
    raw = np.asarray(arr).astype(bo + NP[stored]).tobytes(order="F")
    body += element(bo, MI[stored], raw)
    if imag is not None:
        body += element(bo, MI[stored], np.asarray(imag).astype(bo + NP[stored]).tobytes(order="F"))
    return struct.pack(bo + "II", 14, len(body)) + body


def header(bo, text):
    t = text.encode().ljust(116, b" ")
    return t + b"\0" * 8 + struct.pack(bo + "H", 0x0100) + (b"IM" if bo == "<" else b"MI")


def compressed(bo, elem):
    z = zlib.compress(elem)
    return struct.pack(bo + "II", 15, len(z)) + z


# A double array whose integer values are stored as uint8, as MATLAB does (the ABU map), and an
# int16 array stored as int8; short names use the small element format.
fname = "narrow.mat"
m1 = rng.integers(0, 3, size=(5, 4)).astype(np.float64)
m2 = rng.integers(-100, 100, size=(2, 3, 2)).astype(np.int16)
with open(os.path.join(OUT, fname), "wb") as f:
    f.write(header("<", "MATLAB 5.0 MAT-file, hand-written narrow storage"))
    f.write(compressed("<", matrix("<", "map", m1, "double", "uint8")))
    f.write(matrix("<", "data", m2, "int16", "int8"))
record(fname, "map", m1, "double", "uint8")
record(fname, "data", m2, "int16", "int8")

# Big-endian file with plain and compressed elements.
fname = "bigendian.mat"
b1 = rng.integers(-(1 << 20), 1 << 20, size=(3, 2, 4)).astype(np.int32)
b2 = (rng.integers(-500, 500, size=(4, 5)) / 4.0)
with open(os.path.join(OUT, fname), "wb") as f:
    f.write(header(">", "MATLAB 5.0 MAT-file, hand-written big-endian"))
    f.write(matrix(">", "hsi", b1, "int32", "int32"))
    f.write(compressed(">", matrix(">", "hsi_gt", b2, "double", "double")))
record(fname, "hsi", b1, "int32", "int32")
record(fname, "hsi_gt", b2, "double", "float64")

# Complex array: the reader keeps the real part and flags it.
fname = "complex.mat"
c_re = rng.integers(-9, 9, size=(2, 3)).astype(np.float64)
c_im = rng.integers(-9, 9, size=(2, 3)).astype(np.float64)
with open(os.path.join(OUT, fname), "wb") as f:
    f.write(header("<", "MATLAB 5.0 MAT-file, hand-written complex"))
    f.write(matrix("<", "z", c_re, "double", "double", imag=c_im))
record(fname, "z", c_re, "double", "float64")

# MATLAB v7.3: a 512-byte user block with the header text, then the HDF5 signature.
with open(os.path.join(OUT, "v73.mat"), "wb") as f:
    f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2026 HDF5 schema 1.00 .".ljust(512, b" "))
    f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 56)

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump(expected, f, indent=0, sort_keys=True)


# --- PNG label masks ------------------------------------------------------------------------
def png(path, arr, bitdepth):
    h, w = arr.shape
    dt = ">u2" if bitdepth == 16 else "u1"
    raw = b"".join(b"\0" + arr[r].astype(dt).tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bitdepth, 0, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


PNG = os.path.join(HERE, "png")
os.makedirs(PNG, exist_ok=True)
g8 = rng.integers(0, 5, size=(6, 9)).astype(np.uint8)
g16 = rng.integers(0, 40000, size=(5, 7)).astype(np.uint16)
png(os.path.join(PNG, "gray8.png"), g8, 8)
png(os.path.join(PNG, "gray16.png"), g16, 16)
with open(os.path.join(PNG, "expected.json"), "w") as f:
    json.dump({"gray8.png": {"shape": list(g8.shape), "values": g8.ravel().tolist()},
               "gray16.png": {"shape": list(g16.shape), "values": g16.ravel().tolist()}}, f)
print("fixtures written to", HERE)
