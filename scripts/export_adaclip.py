#!/usr/bin/python3
"""export_adaclip.py: AdaCLIP -> TorchScript detector for spectraclip.

Writes a TorchScript module whose forward(x) takes [B,3,S,S] CLIP-normalised
float images and returns (pixel_scores [B,S,S] in [0,1], image_scores [B]),
carrying image_size, backbone, prompt, weight_name, detector_name and
contract_version as attributes (readable from C++ with module.attr(...)).
The module is traced, then checked against the eager model on fresh random
inputs at batch sizes 1, 2 and 3 *after* a save/load round trip, and only then
moved into place; on any failure nothing is left behind.

  # real weights (see docs/adaclip-export.md for where to get them)
  export_adaclip.py --out adaclip.pt --weights pretrained_all.pth \
      --clip ViT-L-14-336px.pt --token-ids token_ids.json --prompt lentils
  # full-size architecture, random weights (speed tests), or a tiny CPU model
  export_adaclip.py --out adaclip-random.pt --random-weights
  export_adaclip.py --out tiny.pt --tiny
  # as a spectraclip plugin folder
  export_adaclip.py --tiny --plugin-dir my-plugin --plugin-name adaclip_tiny
  # as a compiled AOTInductor package (.pt2, torch >= 2.6) for cpu or cuda, batch 1..16
  export_adaclip.py --aoti --tiny --out tiny.pt2 --device cpu
  # the built-in detector that `spectraclip export-detector --builtin` wrote, compiled
  export_adaclip.py --aoti --builtin-from builtin_detector.pt --out builtin.pt2 --device cpu

A .pt2 package runs only with the torch/LibTorch version and on the device kind it was
compiled for; it records both (and the detector's attributes) in its metadata.

Runs on PyTorch 1.13 (Debian's /usr/bin/python3) and 2.x.
"""


import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adaclip_model as am  # noqa: E402
import builtin_detector as bd  # noqa: E402

CONTRACT_VERSION = 1
DETECTOR_NAME = "AdaCLIP"
DEFAULT_NODE_NAME = "cuvis_ai_adaclip.node.adaclip_node.AdaCLIPDetector"
MANIFEST_NAME = "spectraclip-plugin.yaml"
PLUGIN_FILE_NAME = "detector.pt"
EXTRA_FILE_NAME = "adaclip_export.json"


class ExportError(Exception):
    """ExportError is a user-facing failure: its message names the file,
    option or check that went wrong, and main prints it without a traceback."""


# --------------------------------------------------------------------------
# The exported module
# --------------------------------------------------------------------------


class AdaCLIPDetector(nn.Module):
    """AdaCLIPDetector wraps the traced network so its metadata are real
    TorchScript attributes (typed at class level, not Final, so they stay
    attributes a C++ caller can read with module.attr("image_size") instead of
    being inlined as constants), and so a wrongly shaped input fails with a
    message rather than deep inside a matmul."""

    image_size: int
    backbone: str
    prompt: str
    weight_name: str
    detector_name: str
    contract_version: int
    prompt_set: str
    tokenizer: str
    attention: str

    def __init__(self, inner: nn.Module, meta: Dict[str, object]):
        super().__init__()
        self.inner = inner
        self.image_size = int(meta["image_size"])
        self.backbone = str(meta["backbone"])
        self.prompt = str(meta["prompt"])
        self.weight_name = str(meta["weight_name"])
        self.detector_name = str(meta["detector_name"])
        self.contract_version = int(meta["contract_version"])
        self.prompt_set = str(meta["prompt_set"])
        self.tokenizer = str(meta["tokenizer"])
        self.attention = str(meta["attention"])

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        s = self.image_size
        if x.dim() != 4 or x.size(1) != 3 or x.size(2) != s or x.size(3) != s:
            raise RuntimeError(
                "AdaCLIP detector: input must be [B,3," + str(s) + "," + str(s) + "] (CLIP-normalised), got " + str(x.shape)
            )
        return self.inner(x)


# --------------------------------------------------------------------------
# Inputs: weights and token ids
# --------------------------------------------------------------------------


def _torch_load(path: str):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch without weights_only
        return torch.load(path, map_location="cpu")


def load_clip_state(path: str) -> Dict[str, Tensor]:
    """load_clip_state reads OpenAI's ViT-L-14-336px.pt (a TorchScript
    archive) or a plain state dict of the same keys."""
    if not os.path.isfile(path):
        raise ExportError(f"--clip {path}: no such file")
    try:
        return {k: v for k, v in torch.jit.load(path, map_location="cpu").state_dict().items()}
    except Exception:
        pass
    try:
        obj = _torch_load(path)
    except Exception as e:
        raise ExportError(f"--clip {path}: neither a TorchScript archive nor a state dict torch can read: {e}") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ExportError(f"--clip {path}: holds a {type(obj).__name__}, not a state dict")
    return obj


def load_adaclip_state(path: str) -> Dict[str, Tensor]:
    """load_adaclip_state reads an AdaCLIP checkpoint (a dict of adapter
    tensors, keys prefixed clip_model.), tensors only (weights_only)."""
    if not os.path.isfile(path):
        raise ExportError(f"--weights {path}: no such file")
    try:
        obj = _torch_load(path)
    except Exception as e:
        raise ExportError(f"--weights {path}: not a checkpoint torch can read as plain tensors: {e}") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ExportError(f"--weights {path}: holds a {type(obj).__name__}, not a state dict")
    return obj


def load_token_ids(path: str, normal: List[str], abnormal: List[str], cfg: am.AdaCLIPConfig) -> Tensor:
    """load_token_ids reads precomputed CLIP token ids for the sentences:
    .npy or .json [N,ctx] rows (normal sentences first, in --print-sentences
    order) or .json {"normal": rows, "abnormal": rows, "sentences": {...}}.
    When the file records its sentences they must equal ours."""
    if not os.path.isfile(path):
        raise ExportError(f"--token-ids {path}: no such file")
    n_total = len(normal) + len(abnormal)
    try:
        if path.endswith(".npy"):
            import numpy as np

            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 2 or arr.dtype.kind not in "iu":
                raise ExportError(f"--token-ids {path}: expected a 2-D integer array, got {arr.dtype} {arr.shape}")
            rows = arr.tolist()
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
            if isinstance(obj, dict):
                if "sentences" in obj:
                    rec = obj["sentences"]
                    if not isinstance(rec, dict) or rec.get("normal") != normal or rec.get("abnormal") != abnormal:
                        raise ExportError(
                            f"--token-ids {path}: made for other sentences than this export's "
                            f"(check --prompt and --prompt-set; regenerate with --print-sentences)"
                        )
                if "normal" not in obj or "abnormal" not in obj:
                    raise ExportError(f"--token-ids {path}: a JSON object needs 'normal' and 'abnormal' row lists")
                am.validate_token_ids(obj["normal"], len(normal), cfg.context_length, cfg.vocab_size, f"{path} 'normal'")
                am.validate_token_ids(obj["abnormal"], len(abnormal), cfg.context_length, cfg.vocab_size, f"{path} 'abnormal'")
                rows = list(obj["normal"]) + list(obj["abnormal"])
            elif isinstance(obj, list):
                rows = obj
            else:
                raise ExportError(f"--token-ids {path}: expected a JSON list or object")
        else:
            raise ExportError(f"--token-ids {path}: use a .npy or .json file")
        return am.validate_token_ids(rows, n_total, cfg.context_length, cfg.vocab_size, f"--token-ids {path}")
    except ExportError:
        raise
    except (ValueError, TypeError, OSError) as e:
        raise ExportError(f"--token-ids {path}: {e}") from e


# --------------------------------------------------------------------------
# Building, tracing, verifying
# --------------------------------------------------------------------------


def build_model(args) -> Tuple[am.AdaCLIP, Dict[str, object], Dict[str, object]]:
    """build_model constructs the eager AdaCLIP for the CLI options and returns
    it with the module metadata and a provenance record."""
    cfg = am.TINY_CONFIG if args.tiny else am.FULL_CONFIG
    attention = args.attention
    if attention == "auto":
        attention = "sdpa" if hasattr(torch.nn.functional, "scaled_dot_product_attention") else "math"
    image_size = args.image_size or cfg.image_size
    fields = dict(cfg.__dict__)
    fields.update(image_size=image_size, attention=attention, kmeans_iters=args.kmeans_iters, quick_gelu=args.quick_gelu)
    try:
        cfg = am.AdaCLIPConfig(**fields)
        cfg.validate()
    except ValueError as e:
        raise ExportError(f"--image-size/--attention: {e}") from e

    normal, abnormal = am.build_sentences(args.prompt, args.prompt_set)
    if args.token_ids:
        tokens = load_token_ids(args.token_ids, normal, abnormal, cfg)
        tokenizer = f"precomputed ({os.path.basename(args.token_ids)})"
    else:
        tokens = torch.tensor(am.stand_in_tokenize(normal + abnormal, cfg.context_length, cfg.vocab_size))
        tokenizer = am.STAND_IN_TOKENIZER
    model = am.AdaCLIP(cfg, tokens, len(normal))

    provenance: Dict[str, object] = {}
    if args.weights:
        clip_state = load_clip_state(args.clip)
        adaclip_state = load_adaclip_state(args.weights)
        try:
            report = am.load_official(model, clip_state, adaclip_state, allow_unexpected=args.allow_unexpected_keys)
        except am.KeyMappingError as e:
            raise ExportError(f"--clip {args.clip} / --weights {args.weights}: {e}") from e
        for k in report.unexpected:
            print(f"export_adaclip: warning: ignored unexpected key {k}", file=sys.stderr)
        weight_name = os.path.splitext(os.path.basename(args.weights))[0]
        provenance.update(clip_file=os.path.basename(args.clip), adaclip_file=os.path.basename(args.weights),
                          loaded_keys=len(report.loaded), resized=report.resized, ignored=report.ignored,
                          unexpected=report.unexpected)
    else:
        model.init_random(args.seed)
        weight_name = f"{'tiny-' if args.tiny else ''}random-seed-{args.seed}"
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)

    meta = dict(image_size=cfg.image_size, backbone=cfg.backbone, prompt=args.prompt, weight_name=weight_name,
                detector_name=DETECTOR_NAME, contract_version=CONTRACT_VERSION, prompt_set=args.prompt_set,
                tokenizer=tokenizer, attention=attention)
    clip_params, adapter_params = am.count_parameters(model)
    provenance.update(meta=meta, torch=torch.__version__, config={k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()},
                      sentences={"normal": normal, "abnormal": abnormal}, token_ids=tokens.tolist(),
                      parameters={"clip": clip_params, "adapter": adapter_params},
                      differences_from_upstream=[
                          "text features per image (upstream/cuvis condition every image's text on image 0)",
                          f"HSF k-means: deterministic init at evenly spaced top-k ranks, {cfg.kmeans_iters} Lloyd steps, on device",
                          "no autocast inside the graph; fp16 is a whole-module .half() by the caller",
                          "no Gaussian blur inside the graph; the caller blurs",
                          "layer logits averaged before the bilinear upsample (identical by linearity)",
                      ])
    return model, meta, provenance


def trace_model(model: am.AdaCLIP, example: Tensor, allow_warnings: bool = False) -> torch.jit.ScriptModule:
    """trace_model traces under no_grad and refuses tracer warnings: each one
    means a data-dependent value was frozen into the graph."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        with torch.no_grad():
            traced = torch.jit.trace(model, (example,), check_trace=False)
    bad = [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    for msg in bad if allow_warnings else []:
        log(f"warning: tracer: {msg}")
    if bad and not allow_warnings:
        raise ExportError("tracing froze data-dependent values into the graph:\n  " + "\n  ".join(bad))
    return traced


def verification_inputs(image_size: int, seed: int, batches: Sequence[int], device: torch.device) -> List[Tensor]:
    """verification_inputs are seeded N(0,1) images (the range of
    CLIP-normalised pixels), drawn independently of the tracing example."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, 3, image_size, image_size, generator=g).to(device) for b in batches]


def check_outputs(what: str, out, batch: int, image_size: int) -> None:
    """check_outputs enforces the detector contract's shapes, dtype and range."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ExportError(f"{what}: forward must return (pixel_scores, image_scores)")
    pixel, image = out
    if list(pixel.shape) != [batch, image_size, image_size] or list(image.shape) != [batch]:
        raise ExportError(f"{what}: output shapes {list(pixel.shape)}, {list(image.shape)}; want [{batch},{image_size},{image_size}], [{batch}]")
    for name, t in (("pixel_scores", pixel), ("image_scores", image)):
        if not torch.isfinite(t).all():
            raise ExportError(f"{what}: {name} has non-finite values")
        if t.min() < 0 or t.max() > 1:
            raise ExportError(f"{what}: {name} leaves [0,1] ({t.min().item()}..{t.max().item()})")


def verify(what: str, candidate, reference: am.AdaCLIP, inputs: Sequence[Tensor], atol: float) -> float:
    """verify runs candidate and the eager reference on the same inputs and
    returns the largest absolute difference, failing above atol."""
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            got, want = candidate(x), reference(x)
            check_outputs(what, got, x.size(0), reference.cfg.image_size)
            for name, a, b in (("pixel_scores", got[0], want[0]), ("image_scores", got[1], want[1])):
                d = (a - b).abs().max().item()
                worst = max(worst, d)
                if d > atol:
                    raise ExportError(f"{what}: {name} differs from the eager model by {d:.3g} > {atol:g} at batch size {x.size(0)}")
    return worst


def read_metadata(m) -> Dict[str, object]:
    """read_metadata reads the contract attributes off a (loaded) module."""
    return {k: getattr(m, k) for k in ("image_size", "backbone", "prompt", "weight_name", "detector_name", "contract_version",
                                        "prompt_set", "tokenizer", "attention")}


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# Plugin folder
# --------------------------------------------------------------------------


def _yaml_str(s: str) -> str:
    """_yaml_str quotes any string as a YAML double-quoted scalar."""
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def plugin_manifest(plugin_name: str, node_name: str, file_name: str, sha256: str, meta: Dict[str, object]) -> str:
    """plugin_manifest renders spectraclip-plugin.yaml by hand (no PyYAML): one
    torchscript_detector node with its file, checksum, ports and parameters."""
    lines = [
        "# spectraclip plugin manifest, written by scripts/export_adaclip.py",
        f"# detector: {meta['detector_name']} {meta['backbone']} @ {meta['image_size']} px, weights {meta['weight_name']}",
        "version: 1",
        f"plugin: {_yaml_str(plugin_name)}",
        "nodes:",
        f"  - name: {_yaml_str(node_name)}",
        "    kind: torchscript_detector",
        "    files:",
        f"      - path: {_yaml_str(file_name)}",
        f"        sha256: {_yaml_str(sha256)}",
        "    ports:",
        "      inputs:",
        "        - name: rgb_image",
        "          dtype: float32",
        "          shape: [-1, -1, -1, 3]",
        "      outputs:",
        "        - name: scores",
        "          dtype: float32",
        "          shape: [-1, -1, -1, 1]",
        "        - name: anomaly_score",
        "          dtype: float32",
        "          shape: [-1]",
        "    params:",
        "      gaussian_sigma:",
        "        default: 4.0",
        "      use_half_precision:",
        "        default: false",
        "        allowed: [true, false]",
        "      enable_warmup:",
        "        default: true",
        "      enable_gradients:",
        "        default: false",
    ]
    return "\n".join(lines) + "\n"


def _publishable(path: str) -> None:
    """_publishable gives a mkstemp file (0600) the mode a plain open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _atomic_copy(src: str, dst: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(dst)))
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        _publishable(tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _atomic_write_text(dst: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(os.path.abspath(dst)))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        _publishable(tmp)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _valid_plugin_name(s: str) -> bool:
    return bool(s) and all(c.isalnum() or c in "_-." for c in s) and s[0].isalnum()


def _valid_node_name(s: str) -> bool:
    return bool(s) and all(p.isidentifier() for p in s.split("."))


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="export_adaclip.py",
        description="Export AdaCLIP as a TorchScript detector (forward: [B,3,S,S] CLIP-normalised -> "
        "(pixel_scores [B,S,S], image_scores [B])).",
    )
    p.add_argument("--out", help="where to write the TorchScript file (.pt)")
    p.add_argument("--weights", help="AdaCLIP checkpoint, e.g. pretrained_all.pth (needs --clip and --token-ids)")
    p.add_argument("--clip", help="OpenAI CLIP checkpoint ViT-L-14-336px.pt")
    p.add_argument("--random-weights", action="store_true", help="full-size architecture with seeded random weights")
    p.add_argument("--tiny", action="store_true",
                   help="small architecture for CPU tests (image size 112); random weights unless tiny-shaped --weights/--clip are given")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights and of verification inputs (default 0)")
    p.add_argument("--prompt", default="", help="object/class name put into the sentence templates verbatim (default '')")
    p.add_argument("--prompt-set", choices=am.PROMPT_SETS, default="adaclip",
                   help="adaclip: upstream's 7+5 states (48 sentences); cuvis: the cuvis-ai-adaclip fork's 10+8 (72)")
    p.add_argument("--image-size", type=int, help="input size S, a multiple of 14 (default 518; 112 with --tiny)")
    p.add_argument("--token-ids", help="CLIP token ids of the sentences (.npy or .json, see --print-sentences)")
    p.add_argument("--print-sentences", action="store_true", help="print the prompt sentences as JSON and exit")
    p.add_argument("--attention", choices=("auto", "math", "sdpa"), default="auto",
                   help="auto: sdpa when this torch has it (file then needs LibTorch >= 2.0), else math")
    p.add_argument("--kmeans-iters", type=int, default=20, help="Lloyd iterations of HSF's k-means (default 20)")
    p.add_argument("--quick-gelu", action="store_true", help="QuickGELU (OpenAI CLIP) instead of nn.GELU (what AdaCLIP runs)")
    p.add_argument("--allow-unexpected-keys", action="store_true", help="warn instead of failing on unmapped checkpoint keys")
    p.add_argument("--allow-tracer-warnings", action="store_true",
                   help="log tracer warnings instead of failing (the batch-size 1/2/3 verification still runs)")
    p.add_argument("--device", help="device to trace and verify on (default: cuda if available, else cpu)")
    p.add_argument("--verify-atol", type=float, help="max |traced - eager| (default 1e-5 with --tiny, else 1e-4; "
                   "with --aoti: atol = rtol, default 1e-5 for --builtin-from, 1e-3 for AdaCLIP)")
    p.add_argument("--check-half", action="store_true", help="on CUDA, also run the saved module after .half() and report the deviation")
    p.add_argument("--plugin-dir", help="write a spectraclip plugin folder (manifest + detector.pt) here")
    p.add_argument("--plugin-name", default="adaclip", help="plugin name in the manifest (default adaclip)")
    p.add_argument("--node-name", default=DEFAULT_NODE_NAME, help=f"qualified node name (default {DEFAULT_NODE_NAME})")
    p.add_argument("--aoti", action="store_true",
                   help="write an AOTInductor package (.pt2: torch.export + aoti_compile_and_package, torch >= 2.6) "
                   "for --device instead of TorchScript")
    p.add_argument("--builtin-from", metavar="FILE.pt",
                   help="with --aoti: compile the built-in detector that `spectraclip export-detector --builtin` wrote")
    p.add_argument("--max-batch", type=int, default=16, help="with --aoti: largest batch size of the package (default 16)")
    p.add_argument("--half", action="store_true", help="with --aoti on CUDA: compile the fp16 model (float16 in and out)")
    p.add_argument("--static-threads", action="store_true",
                   help="with --aoti on the CPU: fix the thread count at the exporting process's "
                   "(default: the package follows the caller's intra-op thread count)")
    args = p.parse_args(argv)
    if args.print_sentences:
        return args
    if args.builtin_from or args.max_batch != 16 or args.half or args.static_threads:
        if not args.aoti:
            p.error("--builtin-from, --max-batch, --half and --static-threads go with --aoti")
    if args.aoti:
        if not args.out:
            p.error("--aoti writes one file: give --out FILE.pt2")
        if args.plugin_dir:
            p.error("--aoti: plugins hold TorchScript only; --plugin-dir cannot take a .pt2 package")
        if not 1 <= args.max_batch <= 1024:
            p.error("--max-batch must be in 1..1024")
        if args.check_half:
            p.error("--aoti: use --half to compile the fp16 model (--check-half is for TorchScript)")
    if args.builtin_from:
        if args.weights or args.clip or args.random_weights or args.tiny:
            p.error("--builtin-from is its own detector: no --weights/--clip/--random-weights/--tiny")
        return args
    if not args.out and not args.plugin_dir:
        p.error("give --out FILE.pt and/or --plugin-dir DIR")
    if args.tiny and args.random_weights:
        p.error("--tiny and --random-weights are two different models; choose one")
    if args.random_weights and (args.weights or args.clip):
        p.error("--random-weights excludes --weights/--clip")
    if bool(args.weights) != bool(args.clip):
        p.error("--weights and --clip go together (AdaCLIP adapters + OpenAI CLIP backbone)")
    if not (args.weights or args.random_weights or args.tiny):
        p.error("choose the weights: --weights A.pth --clip ViT-L-14-336px.pt, or --random-weights, or --tiny")
    if args.weights and not args.token_ids:
        p.error("real-weight exports need the real CLIP token ids of the prompt sentences: produce them with your "
                "AdaCLIP checkout's tokenizer (see docs/adaclip-export.md, 'Token ids') and pass --token-ids FILE")
    if args.kmeans_iters < 0:
        p.error("--kmeans-iters must be >= 0")
    if args.plugin_dir:
        if not _valid_plugin_name(args.plugin_name):
            p.error(f"--plugin-name {args.plugin_name!r}: use letters, digits, '_', '-', '.'")
        if not _valid_node_name(args.node_name):
            p.error(f"--node-name {args.node_name!r}: must be a dotted Python-style name")
    return args


def export(args) -> Dict[str, object]:
    """export runs the whole pipeline and returns a summary (paths, sizes,
    timings, verification error)."""
    t0 = time.time()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.aoti:
        return export_aoti(args, device, t0)
    targets = []
    made_dir = None
    if args.out:
        out_dir = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(out_dir):
            raise ExportError(f"--out {args.out}: folder {out_dir} does not exist")
        targets.append(os.path.abspath(args.out))
    if args.plugin_dir:
        if not os.path.isdir(args.plugin_dir):
            try:
                os.makedirs(args.plugin_dir)
            except OSError as e:
                raise ExportError(f"--plugin-dir {args.plugin_dir}: {e}") from e
            made_dir = args.plugin_dir
        targets.append(os.path.join(os.path.abspath(args.plugin_dir), PLUGIN_FILE_NAME))
    try:
        return _export(args, device, targets, t0)
    except BaseException:
        if made_dir:
            shutil.rmtree(made_dir, ignore_errors=True)
        raise


def _export(args, device: torch.device, targets: List[str], t0: float) -> Dict[str, object]:
    model, meta, provenance = build_model(args)
    model.to(device)
    size = model.cfg.image_size
    atol = args.verify_atol if args.verify_atol is not None else (1e-5 if args.tiny else 1e-4)
    t_build = time.time()
    log(f"built {meta['backbone']} ({meta['weight_name']}) in {t_build - t0:.1f}s on {device}")

    example = verification_inputs(size, args.seed + 1000, [2], device)[0]
    traced = trace_model(model, example, args.allow_tracer_warnings)
    detector = torch.jit.script(AdaCLIPDetector(traced, meta))
    t_trace = time.time()
    log(f"traced in {t_trace - t_build:.1f}s")

    inputs = verification_inputs(size, args.seed + 2000, [1, 2, 3], device)
    # torch.jit.save names the archive's root folder after the file, so the
    # file is written under a fixed name inside a private temporary folder:
    # identical exports give identical bytes whatever --out is called.
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-adaclip-", dir=os.path.dirname(targets[0]))
    tmp = os.path.join(tmp_dir, "adaclip.pt")
    try:
        extra = {EXTRA_FILE_NAME: json.dumps(provenance, indent=1)}
        torch.jit.save(detector.cpu(), tmp, _extra_files=extra)  # device-neutral file
        model.to(device)  # the trace shares the eager parameters, which .cpu() just moved
        loaded = torch.jit.load(tmp, map_location=device)
        if read_metadata(loaded) != meta:
            raise ExportError(f"attributes read back from the saved file differ: {read_metadata(loaded)} != {meta}")
        worst = verify("saved module", loaded, model, inputs, atol)
        t_verify = time.time()
        log(f"verified saved module against eager at batch sizes 1,2,3: max |diff| {worst:.3g} (atol {atol:g}) in {t_verify - t_trace:.1f}s")
        half_dev = None
        if args.check_half:
            half_dev = check_half(loaded, model, inputs, device)
        digest = sha256_file(tmp)
        file_size = os.path.getsize(tmp)
        _publishable(tmp)
        os.replace(tmp, targets[0])
        for extra_target in targets[1:]:
            _atomic_copy(targets[0], extra_target)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)

    summary: Dict[str, object] = dict(files=targets, sha256=digest, bytes=file_size, max_abs_diff=worst, atol=atol,
                                      seconds=round(time.time() - t0, 2), meta=meta, half_max_abs_diff=half_dev,
                                      parameters=provenance["parameters"])
    if args.plugin_dir:
        manifest = os.path.join(os.path.abspath(args.plugin_dir), MANIFEST_NAME)
        _atomic_write_text(manifest, plugin_manifest(args.plugin_name, args.node_name, PLUGIN_FILE_NAME, digest, meta))
        summary["manifest"] = manifest
        log(f"plugin folder {args.plugin_dir}: {MANIFEST_NAME} + {PLUGIN_FILE_NAME}; to publish it:\n"
            f"  cd {args.plugin_dir} && git init && git add {MANIFEST_NAME} {PLUGIN_FILE_NAME} && "
            f"git commit -m 'AdaCLIP detector' && git tag v0.1.0\n"
            f"  (files over ~100 MB: 'git lfs track \"*.pt\"' before 'git add', or use the folder as a local plugin)")
    return summary


# --------------------------------------------------------------------------
# AOTInductor packages (.pt2)
# --------------------------------------------------------------------------

AOTI_FORMAT = "spectraclip-detector-aoti/1"


def _torch_at_least(major: int, minor: int) -> bool:
    parts = torch.__version__.split("+")[0].split(".")
    try:
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def aoti_metadata(meta: Dict[str, object], device: torch.device, dtype: torch.dtype, image_size: int,
                  max_batch: int, dynamic_threads: bool, extra: Dict[str, object]) -> Dict[str, str]:
    """aoti_metadata is what the package records for its reader (all strings: AOTInductor's
    metadata is a string map): the torch version and device it was compiled for, the input
    contract the Go shim checks before each run, and the detector attributes that a
    TorchScript detector carries as module attributes."""
    dt = {torch.float32: "float32", torch.float16: "float16"}[dtype]
    out = {str(k): str(v) for k, v in meta.items()}
    out.update({str(k): str(v) for k, v in extra.items()})
    out.update({
        "spectraclip.format": AOTI_FORMAT,
        "spectraclip.torch_version": torch.__version__,
        "spectraclip.device": device.type,
        "spectraclip.inputs": f"{dt}[1..{max_batch},3,{image_size},{image_size}]",
        "spectraclip.outputs": f"pixel_scores {dt}[B,{image_size},{image_size}];image_scores {dt}[B]",
        "spectraclip.dynamic_threads": "1" if dynamic_threads else "0",
    })
    return out


def compile_package(module: nn.Module, example: Tensor, max_batch: int, metadata: Dict[str, str], path: str,
                    dynamic_threads: bool) -> float:
    """compile_package exports module with a dynamic batch dimension (1..max_batch) and
    compiles it into the AOTInductor package path; it returns the seconds it took."""
    t = time.time()
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    with torch.no_grad():
        ep = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    configs: Dict[str, object] = {"aot_inductor.metadata": metadata}
    if example.device.type == "cpu":
        # the generated OpenMP loops read the intra-op thread count at run time instead of
        # fixing the exporting process's (torch.set_num_threads / LibTorch's set_num_threads)
        configs["cpp.dynamic_threads"] = dynamic_threads
    torch._inductor.aoti_compile_and_package(ep, package_path=path, inductor_configs=configs)
    return time.time() - t


def verify_package(what: str, package, references: Sequence[Tuple[str, object]], inputs: Sequence[Tensor],
                   image_size: int, atol: float, rtol: float) -> float:
    """verify_package runs the loaded package and each reference on the same inputs and
    returns the largest |diff| / (atol/rtol + |reference|) ratio scaled to atol, failing when
    |diff| > atol + rtol * |reference| anywhere."""
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            got = tuple(package(x))
            check_outputs(what, tuple(t.float() for t in got), x.size(0), image_size)
            for ref_name, ref in references:
                want = ref(x)
                for name, a, b in (("pixel_scores", got[0], want[0]), ("image_scores", got[1], want[1])):
                    a, b = a.double(), b.double()
                    d = (a - b).abs()
                    worst = max(worst, d.max().item())
                    bad = d > atol + rtol * b.abs()
                    if bad.any():
                        i = int(bad.flatten().nonzero()[0])
                        raise ExportError(f"{what}: {name} differs from the {ref_name} at batch size {x.size(0)}: "
                                          f"{a.flatten()[i].item():.9g} vs {b.flatten()[i].item():.9g} "
                                          f"(atol {atol:g}, rtol {rtol:g})")
    return worst


def export_aoti(args, device: torch.device, t0: float) -> Dict[str, object]:
    """export_aoti writes the detector as an AOTInductor package: the eager module (AdaCLIP,
    or the built-in detector rebuilt from Go's TorchScript) is exported with a dynamic batch,
    compiled for device, loaded back and checked against the eager module (and, for the
    built-in detector, against the TorchScript it came from) on fresh inputs at batch sizes
    1, 2 and 3 before it is moved into place."""
    if not _torch_at_least(2, 6):
        raise ExportError(f"--aoti needs torch 2.6 or newer (this is torch {torch.__version__}); run the exporter "
                          "with the Python of the torch the package is for, e.g. .venv/bin/python (make deps TORCH=pip)")
    out = os.path.abspath(args.out)
    if not os.path.isdir(os.path.dirname(out)):
        raise ExportError(f"--out {args.out}: folder {os.path.dirname(out)} does not exist")
    if not out.endswith(".pt2"):
        raise ExportError(f"--out {args.out}: an AOTInductor package is named *.pt2")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ExportError("--device cuda: this torch sees no CUDA device")
    if args.half and device.type != "cuda":
        raise ExportError("--half: fp16 packages are for CUDA (--device cuda)")
    dtype = torch.float16 if args.half else torch.float32
    references: List[Tuple[str, object]] = []
    extra: Dict[str, object] = {}
    if args.builtin_from:
        try:
            module, ts = bd.from_torchscript(args.builtin_from)
        except (ValueError, RuntimeError) as e:
            raise ExportError(f"--builtin-from {args.builtin_from}: {e}") from e
        meta = dict(module.meta)
        size = module.image_size
        ts.to(device)
        references.append(("TorchScript it was rebuilt from", ts))
        atol = args.verify_atol if args.verify_atol is not None else 1e-5
        extra["source_sha256"] = sha256_file(args.builtin_from)
    else:
        model, meta, provenance = build_model(args)
        module = AdaCLIPDetector(model, meta)
        size = model.cfg.image_size
        # HSF's k-means assigns tokens to clusters and keeps the top-k: a float32 reordering
        # by the compiler that flips a near-tie moves a few pixel scores by ~1e-4 (measured
        # 2.9e-4 on the tiny model at 56 px), where the TorchScript trace matches to 1e-5
        atol = args.verify_atol if args.verify_atol is not None else 1e-3
        extra["config"] = json.dumps(provenance["config"], sort_keys=True)
    module.eval().to(device)
    for p in module.parameters():
        p.requires_grad_(False)
    references.insert(0, ("eager module", module))
    if args.half:
        module.half()
        references = [("eager fp16 module", module)]
        atol = max(atol, 1e-2)  # fp16 against itself: only the compiler's reordering differs
    log(f"built {meta['backbone']} ({meta['weight_name']}) in {time.time() - t0:.1f}s on {device}")

    dynamic_threads = device.type == "cpu" and not args.static_threads
    metadata = aoti_metadata(meta, device, dtype, size, args.max_batch, dynamic_threads, extra)
    example = verification_inputs(size, args.seed + 1000, [min(2, args.max_batch)], device)[0].to(dtype)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-aoti-", dir=os.path.dirname(out))
    tmp = os.path.join(tmp_dir, "detector.pt2")
    try:
        secs = compile_package(module, example, args.max_batch, metadata, tmp, dynamic_threads)
        log(f"exported and compiled for {device} in {secs:.1f}s")
        package = torch._inductor.aoti_load_package(tmp)
        got_meta = package.get_metadata()
        lost = {k: v for k, v in metadata.items() if got_meta.get(k) != v}
        if lost:
            raise ExportError(f"metadata read back from the package differ: {lost}")
        batches = [b for b in (1, 2, 3) if b <= args.max_batch]
        inputs = [x.to(dtype) for x in verification_inputs(size, args.seed + 2000, batches, device)]
        worst = verify_package("package", package, references, inputs, size, atol, atol)
        log(f"verified package at batch sizes {batches}: max |diff| {worst:.3g} (atol = rtol = {atol:g})")
        digest = sha256_file(tmp)
        file_size = os.path.getsize(tmp)
        _publishable(tmp)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dict(files=[out], sha256=digest, bytes=file_size, max_abs_diff=worst, atol=atol, compile_seconds=round(secs, 2),
                seconds=round(time.time() - t0, 2), meta=meta, metadata=metadata, max_batch=args.max_batch,
                device=device.type)


def check_half(loaded, model: am.AdaCLIP, inputs: Sequence[Tensor], device: torch.device) -> Optional[float]:
    """check_half is the fp16 path the Go node takes on CUDA (whole-module
    .half(), half input); it reports the deviation from fp32 eager and fails
    only on broken outputs, since fp16 is not expected to match to 1e-4."""
    if device.type != "cuda":
        log("--check-half skipped: needs a CUDA device")
        return None
    half = loaded.half()
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            got = half(x.half())
            got = (got[0].float(), got[1].float())
            check_outputs("saved module in fp16", got, x.size(0), model.cfg.image_size)
            want = model(x)
            worst = max(worst, (got[0] - want[0]).abs().max().item(), (got[1] - want[1]).abs().max().item())
    log(f"fp16: max |half - fp32 eager| = {worst:.3g}")
    return worst


def log(msg: str) -> None:
    print(f"export_adaclip: {msg}", file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.print_sentences:
        normal, abnormal = am.build_sentences(args.prompt, args.prompt_set)
        json.dump({"prompt": args.prompt, "prompt_set": args.prompt_set, "normal": normal, "abnormal": abnormal},
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    try:
        summary = export(args)
    except ExportError as e:
        print(f"export_adaclip: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
