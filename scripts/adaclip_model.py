"""AdaCLIP (ECCV 2024) written out in plain torch.nn for TorchScript export.

This module is the architecture half of ``export_adaclip.py``. It holds:

* a CLIP ViT and a CLIP text transformer whose parameter names are those of
  the official OpenAI CLIP state dict (``visual.conv1.weight``,
  ``visual.transformer.resblocks.N.attn.in_proj_weight``, ``token_embedding``,
  ``ln_final``, ...), so that ``ViT-L-14-336px.pt`` loads by name;
* the AdaCLIP adapters under the names the AdaCLIP trainer saves them
  (``text_prompter.static_prompts.N``, ``visual_prompter.static_prompts.N``,
  ``patch_token_layer.head.N``, ``cls_token_layer.head.0``,
  ``dynamic_visual_prompt_generator.head.N``,
  ``dynamic_text_prompt_generator.head.N``), once the ``module.`` and
  ``clip_model.`` prefixes of a checkpoint are stripped;
* ``KEY_TABLE``/``load_official``: the explicit key mapping and a loader that
  is strict about every key it maps;
* the prompt-sentence ensemble and a deterministic stand-in tokenizer.

Nothing here imports open_clip, clip, sklearn or numpy-in-forward; the forward
pass is pure tensor dataflow so that ``torch.jit.trace`` records it faithfully
for any batch size. It runs on PyTorch 1.13 (Debian) and 2.x.

Deliberate differences from upstream AdaCLIP are listed in
docs/adaclip-export.md; in short: text features are computed per image (the
upstream/cuvis code conditions every image's text on image 0), HSF's sklearn
k-means is a deterministic on-device Lloyd iteration, no autocast, no blur.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class AdaCLIPConfig:
    """AdaCLIPConfig fixes every shape of the network; the defaults are the
    released AdaCLIP setting (ViT-L/14-336 backbone run at 518 px, prompting
    depth 4 and length 5, static+dynamic prompts on both branches, HSF with
    20 clusters)."""

    backbone: str = "ViT-L-14-336"
    image_size: int = 518
    patch_size: int = 14
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    # Grid of the positional embedding stored in the CLIP checkpoint
    # (336 / 14 = 24); it is resized to image_size / patch_size at load time.
    source_grid: int = 24
    embed_dim: int = 768
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    mlp_ratio: float = 4.0
    prompt_length: int = 5
    prompt_depth: int = 4
    # 1-based block indices whose outputs feed the patch heads.
    feature_layers: Tuple[int, ...] = (6, 12, 18, 24)
    k_clusters: int = 20
    kmeans_iters: int = 20
    hsf_alpha: float = 0.2
    # AdaCLIP builds its CLIP from the open_clip JSON config, which does not
    # set quick_gelu, so its towers use exact nn.GELU on OpenAI weights.
    quick_gelu: bool = False
    # "math" (explicit softmax(QK^T)V; works on every torch) or "sdpa"
    # (F.scaled_dot_product_attention; torch >= 2.0 on both ends).
    attention: str = "math"
    # Upstream's PromptLayer calls .half() on every prompt before torch.cat
    # promotes it back; keeping this reproduces its fp32 numbers.
    fp16_prompt_rounding: bool = True

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def validate(self) -> None:
        """validate rejects configurations the forward pass cannot honour, with
        a message naming the offending field."""
        if self.image_size <= 0 or self.image_size % self.patch_size != 0:
            raise ValueError(
                f"image_size {self.image_size} must be a positive multiple of the patch size {self.patch_size}"
            )
        if self.vision_width % self.vision_heads != 0:
            raise ValueError(f"vision_width {self.vision_width} not divisible by vision_heads {self.vision_heads}")
        if self.text_width % self.text_heads != 0:
            raise ValueError(f"text_width {self.text_width} not divisible by text_heads {self.text_heads}")
        if len(self.feature_layers) == 0:
            raise ValueError("feature_layers is empty")
        for layer in self.feature_layers:
            if not 1 <= layer <= self.vision_layers:
                raise ValueError(f"feature layer {layer} outside 1..{self.vision_layers}")
        if not 1 <= self.prompt_depth <= self.vision_layers:
            raise ValueError(f"prompt_depth {self.prompt_depth} outside 1..{self.vision_layers}")
        if self.prompt_length < 1 or 1 + self.prompt_length >= self.context_length:
            raise ValueError(f"prompt_length {self.prompt_length} does not fit the text context {self.context_length}")
        if self.k_clusters < 1 or self.kmeans_iters < 0:
            raise ValueError("k_clusters must be >= 1 and kmeans_iters >= 0")
        if self.attention not in ("math", "sdpa"):
            raise ValueError(f"attention must be 'math' or 'sdpa', not {self.attention!r}")
        if self.attention == "sdpa" and not hasattr(F, "scaled_dot_product_attention"):
            raise ValueError(f"attention 'sdpa' needs torch >= 2.0 (this is {torch.__version__})")


FULL_CONFIG = AdaCLIPConfig()

# TINY_CONFIG is for CPU tests: every code path of the full model (prompt
# insertion at 4 depths on both branches, 4 feature layers, HSF with clamped
# top-k) at a size that traces in seconds. Widths differ from each other on
# purpose so that a transposed or swapped weight cannot load.
TINY_CONFIG = AdaCLIPConfig(
    backbone="tiny-vit",
    image_size=112,
    patch_size=14,
    vision_width=64,
    vision_layers=4,
    vision_heads=4,
    source_grid=6,
    embed_dim=32,
    text_width=48,
    text_layers=4,
    text_heads=4,
    context_length=77,
    vocab_size=1000,
    feature_layers=(1, 2, 3, 4),
)


# --------------------------------------------------------------------------
# Prompt sentences and tokenisation
# --------------------------------------------------------------------------

PROMPT_TEMPLATES = [
    "a bad photo of a {}.",
    "a low resolution photo of the {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
]
ADACLIP_NORMAL_STATES = [
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
]
ADACLIP_ABNORMAL_STATES = [
    "damaged {}",
    "broken {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
]
# The cuvis-ai-adaclip fork appends these (verbatim from its method/adaclip.py,
# including "clean {}" in the *abnormal* list, presumably meant as "dirty").
CUVIS_EXTRA_NORMAL_STATES = ["clean {}", "{} without foreign object", "{} without contamination"]
CUVIS_EXTRA_ABNORMAL_STATES = ["clean {}", "{} with foreign object", "{} with contamination"]

PROMPT_SETS = ("adaclip", "cuvis")


def build_sentences(prompt: str, prompt_set: str = "adaclip") -> Tuple[List[str], List[str]]:
    """build_sentences reproduces upstream's ensemble: the prompt is the class
    name verbatim (hyphens become spaces; "" stays ""), put into each state and
    each state into each template, state-major. Returns (normal, abnormal)."""
    if prompt_set not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {prompt_set!r}; choose one of {PROMPT_SETS}")
    normal_states = list(ADACLIP_NORMAL_STATES)
    abnormal_states = list(ADACLIP_ABNORMAL_STATES)
    if prompt_set == "cuvis":
        normal_states += CUVIS_EXTRA_NORMAL_STATES
        abnormal_states += CUVIS_EXTRA_ABNORMAL_STATES
    name = prompt.replace("-", " ")

    def expand(states: Sequence[str]) -> List[str]:
        return [t.format(s.format(name)) for s in states for t in PROMPT_TEMPLATES]

    return expand(normal_states), expand(abnormal_states)


STAND_IN_TOKENIZER = "stand-in (sha256 of each word into the vocabulary; NOT the CLIP BPE)"


def stand_in_tokenize(sentences: Sequence[str], context_length: int, vocab_size: int) -> List[List[int]]:
    """stand_in_tokenize is a deterministic substitute for CLIP's BPE, used only
    for random-weight and tiny exports where no vocabulary file exists: every
    lower-cased word or punctuation mark becomes 1 + sha256(word) mod
    (vocab-3), framed by SOT = vocab-2 and EOT = vocab-1 (the largest id, so
    that EOT is found by argmax exactly as with real CLIP ids), zero-padded."""
    if vocab_size < 4:
        raise ValueError("vocab_size must be at least 4 for the stand-in tokenizer")
    sot, eot = vocab_size - 2, vocab_size - 1
    rows = []
    for s in sentences:
        words = re.findall(r"[a-z0-9]+|[^\sa-z0-9]", s.lower())
        ids = [1 + int.from_bytes(hashlib.sha256(w.encode("utf-8")).digest()[:8], "little") % (vocab_size - 3) for w in words]
        ids = [sot] + ids[: context_length - 2] + [eot]
        rows.append(ids + [0] * (context_length - len(ids)))
    return rows


def validate_token_ids(rows: Sequence[Sequence[int]], count: int, context_length: int, vocab_size: int, what: str) -> Tensor:
    """validate_token_ids turns externally produced token ids into a [N, ctx]
    long tensor, naming `what` (the file and part) in every error."""
    if len(rows) != count:
        raise ValueError(f"{what}: expected {count} token rows (one per sentence), got {len(rows)}")
    out = torch.zeros(count, context_length, dtype=torch.long)
    for i, row in enumerate(rows):
        row = [int(v) for v in row]
        if len(row) > context_length:
            raise ValueError(f"{what}: row {i} has {len(row)} ids, more than the context length {context_length}")
        if any(v < 0 or v >= vocab_size for v in row):
            raise ValueError(f"{what}: row {i} has ids outside [0, {vocab_size})")
        if len(row) < 2 or max(row) == 0:
            raise ValueError(f"{what}: row {i} is empty")
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        eot = int(out[i].argmax())
        if eot == 0:
            raise ValueError(f"{what}: row {i}: the end-of-text id (the largest id) sits at position 0")
    return out


# --------------------------------------------------------------------------
# CLIP building blocks (official OpenAI parameter names)
# --------------------------------------------------------------------------


class QuickGELU(nn.Module):
    """QuickGELU is the activation OpenAI trained CLIP with; offered for
    experiments, AdaCLIP itself runs nn.GELU (see AdaCLIPConfig.quick_gelu)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """Attention is multi-head self-attention with nn.MultiheadAttention's
    parameter names (in_proj_weight/in_proj_bias/out_proj) but batch-first and
    without attention weights, so the traced graph is plain differentiable
    aten ops (no fused fast path without a backward)."""

    def __init__(self, width: int, heads: int, use_sdpa: bool):
        super().__init__()
        self.heads = heads
        self.head_dim = width // heads
        self.scale = self.head_dim ** -0.5
        self.use_sdpa = use_sdpa
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: Tensor, mask: Optional[Tensor]) -> Tensor:
        n, length, width = x.size(0), x.size(1), x.size(2)
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q = q.reshape(n, length, self.heads, self.head_dim).transpose(1, 2)
        k = k.reshape(n, length, self.heads, self.head_dim).transpose(1, 2)
        v = v.reshape(n, length, self.heads, self.head_dim).transpose(1, 2)
        if self.use_sdpa:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=mask is not None)
        else:
            attn = torch.matmul(q * self.scale, k.transpose(-2, -1))
            if mask is not None:
                attn = attn + mask
            o = torch.matmul(attn.softmax(dim=-1), v)
        o = o.transpose(1, 2).reshape(n, length, width)
        return self.out_proj(o)


class ResidualAttentionBlock(nn.Module):
    """ResidualAttentionBlock is CLIP's pre-LN transformer block."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, quick_gelu: bool, use_sdpa: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, use_sdpa)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, hidden)),
                    ("gelu", QuickGELU() if quick_gelu else nn.GELU()),
                    ("c_proj", nn.Linear(hidden, width)),
                ]
            )
        )

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Transformer only exists to give blocks the `transformer.resblocks.N` names."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, quick_gelu: bool, use_sdpa: bool):
        super().__init__()
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads, mlp_ratio, quick_gelu, use_sdpa) for _ in range(layers)]
        )


class VisionTransformer(nn.Module):
    """VisionTransformer is CLIP's ViT; the positional embedding has the
    export resolution's grid (the checkpoint's 24x24 grid is resized into it
    by load_official, as upstream's resize_pos_embed does)."""

    def __init__(self, cfg: AdaCLIPConfig):
        super().__init__()
        w = cfg.vision_width
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(w))
        self.positional_embedding = nn.Parameter(torch.empty(cfg.num_patches + 1, w))
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, cfg.vision_layers, cfg.vision_heads, cfg.mlp_ratio, cfg.quick_gelu, cfg.attention == "sdpa")
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.empty(w, cfg.embed_dim))

    def embed(self, image: Tensor) -> Tensor:
        """embed turns [B,3,S,S] into the ln_pre'd token sequence [B,1+P,W]."""
        x = self.conv1(image)
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.reshape(1, 1, -1).expand(x.size(0), 1, x.size(2))
        x = torch.cat([cls.type_as(x), x], dim=1)
        x = x + self.positional_embedding.type_as(x)
        return self.ln_pre(x)

    def pool(self, x: Tensor) -> Tensor:
        """pool is CLIP's image embedding: ln_post of the CLS token, projected."""
        return torch.matmul(self.ln_post(x[:, 0, :]), self.proj)


class PromptLayer(nn.Module):
    """PromptLayer holds one learnable [length, C] static prompt per prompted
    layer, named like upstream's ParameterList (`static_prompts.N`)."""

    def __init__(self, channels: int, length: int, depth: int):
        super().__init__()
        self.static_prompts = nn.ParameterList([nn.Parameter(torch.empty(length, channels)) for _ in range(depth)])


class ProjectLayer(nn.Module):
    """ProjectLayer is upstream's list of Linear heads (`head.N`)."""

    def __init__(self, in_dim: int, out_dim: int, replicas: int):
        super().__init__()
        self.head = nn.ModuleList([nn.Linear(in_dim, out_dim) for _ in range(replicas)])


# --------------------------------------------------------------------------
# AdaCLIP
# --------------------------------------------------------------------------


class AdaCLIP(nn.Module):
    """AdaCLIP maps CLIP-normalised images [B,3,S,S] to
    (pixel_scores [B,S,S] in [0,1], image_scores [B]).

    The prompt sentences are fixed at construction (`text_tokens`, [N,ctx]);
    the first `num_normal` rows describe the normal state. Every image gets its
    own text features (its own dynamic text prompts), so an image's result does
    not depend on the rest of the batch."""

    def __init__(self, cfg: AdaCLIPConfig, text_tokens: Tensor, num_normal: int):
        super().__init__()
        cfg.validate()
        if text_tokens.dim() != 2 or text_tokens.size(1) != cfg.context_length:
            raise ValueError(f"text_tokens must be [N, {cfg.context_length}], got {list(text_tokens.shape)}")
        if not 0 < num_normal < text_tokens.size(0):
            raise ValueError(f"num_normal {num_normal} must split the {text_tokens.size(0)} sentences into two states")
        self.cfg = cfg
        self.num_normal = num_normal
        self.num_sentences = int(text_tokens.size(0))
        use_sdpa = cfg.attention == "sdpa"

        # CLIP (official key names).
        self.visual = VisionTransformer(cfg)
        self.transformer = Transformer(cfg.text_width, cfg.text_layers, cfg.text_heads, cfg.mlp_ratio, cfg.quick_gelu, use_sdpa)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(torch.empty(cfg.context_length, cfg.text_width))
        self.ln_final = nn.LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(torch.empty(cfg.text_width, cfg.embed_dim))
        self.logit_scale = nn.Parameter(torch.empty(()))  # loaded for key fidelity; AdaCLIP uses a fixed 100

        # AdaCLIP adapters (checkpoint key names).
        self.text_prompter = PromptLayer(cfg.text_width, cfg.prompt_length, cfg.prompt_depth)
        self.visual_prompter = PromptLayer(cfg.vision_width, cfg.prompt_length, cfg.prompt_depth)
        self.patch_token_layer = ProjectLayer(cfg.vision_width, cfg.embed_dim, len(cfg.feature_layers))
        self.cls_token_layer = ProjectLayer(cfg.embed_dim, cfg.embed_dim, 1)
        self.dynamic_visual_prompt_generator = ProjectLayer(cfg.embed_dim, cfg.vision_width, cfg.prompt_length)
        self.dynamic_text_prompt_generator = ProjectLayer(cfg.embed_dim, cfg.text_width, cfg.prompt_length)

        # Derived constants: buffers (so .to(device)/.to(dtype) move them and
        # the trace never bakes a device), not part of any official file.
        ctx = cfg.context_length
        mask = torch.full((ctx, ctx), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)
        self.register_buffer("text_tokens", text_tokens.to(torch.long).clone(), persistent=False)
        self.register_buffer("text_eot", text_tokens.to(torch.long).argmax(dim=-1), persistent=False)
        k = min(cfg.num_patches, 5 * cfg.k_clusters)
        kc = min(cfg.k_clusters, k)
        self.topk = k
        init = torch.tensor([round(j * (k - 1) / max(kc - 1, 1)) for j in range(kc)], dtype=torch.long)
        self.register_buffer("kmeans_init", init, persistent=False)
        self.register_buffer("cluster_ids", torch.arange(kc, dtype=torch.long), persistent=False)

    # -- initialisation ---------------------------------------------------

    @torch.no_grad()
    def init_random(self, seed: int) -> None:
        """init_random fills every parameter from a seeded generator with
        CLIP-like scales, so random-weight exports are reproducible and their
        scores are not degenerate."""
        g = torch.Generator().manual_seed(seed)
        cfg = self.cfg
        for name, p in self.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")):
                p.fill_(1.0)
            elif name.endswith("bias"):
                p.zero_()
            elif name == "logit_scale":
                p.fill_(math.log(1 / 0.07))
            elif name.startswith("visual."):
                p.normal_(0.0, cfg.vision_width ** -0.5, generator=g)
            elif "static_prompts" in name:
                p.normal_(0.0, 0.02, generator=g)
            else:
                fan_in = p.shape[-1] if p.dim() > 1 else p.numel()
                p.normal_(0.0, fan_in ** -0.5, generator=g)
        for name, p in self.named_parameters():
            if name in ("visual.proj", "text_projection"):
                p.normal_(0.0, p.shape[0] ** -0.5, generator=g)
            if name in ("token_embedding.weight", "positional_embedding"):
                p.normal_(0.0, 0.02 if name == "token_embedding.weight" else 0.01, generator=g)

    # -- pieces of the forward pass ---------------------------------------

    def _prompt(self, static: Tensor, dynamic: Tensor) -> Tensor:
        ctx = static.unsqueeze(0) + dynamic
        if self.cfg.fp16_prompt_rounding:
            ctx = ctx.half()  # torch.cat promotes back to the stream's dtype
        return ctx

    def encode_unprompted(self, image: Tensor) -> Tensor:
        """encode_unprompted is plain CLIP's pooled, projected embedding [B,E],
        the input of the dynamic prompt generators."""
        x = self.visual.embed(image)
        for blk in self.visual.transformer.resblocks:
            x = blk(x)
        return self.visual.pool(x)

    def encode_prompted(self, image: Tensor, dyn_visual: Tensor) -> Tuple[List[Tensor], Tensor]:
        """encode_prompted runs the prompted ViT: prompts appended after the
        CLS+patch tokens at block 0 and replaced at blocks 1..depth-1; returns
        the patch tokens (CLS and prompts dropped) after each feature layer and
        the pooled embedding."""
        cfg = self.cfg
        n_img = 1 + cfg.num_patches
        x = self.visual.embed(image)
        feats: List[Tensor] = []
        for i, blk in enumerate(self.visual.transformer.resblocks):
            if i < cfg.prompt_depth:
                ctx = self._prompt(self.visual_prompter.static_prompts[i], dyn_visual)
                base = x if i == 0 else x[:, :n_img, :]
                x = torch.cat([base, ctx], dim=1)
            x = blk(x)
            if (i + 1) in cfg.feature_layers:
                feats.append(x[:, 1:n_img, :])
        return feats, self.visual.pool(x)

    def encode_text(self, dyn_text: Tensor) -> Tensor:
        """encode_text returns each image's text features [B,E,2] (normal,
        abnormal): its dynamic text prompt overwrites positions 1..length at
        blocks 1..depth-1 (block 0 is unprompted, as upstream), sentence
        embeddings are L2-normalised, averaged per state and renormalised."""
        cfg = self.cfg
        n, length, p = self.num_sentences, cfg.context_length, cfg.prompt_length
        x = self.token_embedding(self.text_tokens) + self.positional_embedding
        mask = self.attn_mask.type_as(x)
        blocks = self.transformer.resblocks
        x = blocks[0](x, mask)  # identical for every image: computed once
        x = x.unsqueeze(0).expand(dyn_text.size(0), n, length, cfg.text_width).reshape(-1, length, cfg.text_width)
        for i in range(1, len(blocks)):
            if i < cfg.prompt_depth:
                ctx = self._prompt(self.text_prompter.static_prompts[i], dyn_text)
                ctx = ctx.unsqueeze(1).expand(-1, n, p, cfg.text_width).reshape(-1, p, cfg.text_width)
                x = torch.cat([x[:, :1, :], ctx, x[:, 1 + p :, :]], dim=1)
            x = blocks[i](x, mask)
        x = self.ln_final(x).reshape(-1, n, length, cfg.text_width)
        idx = self.text_eot.reshape(1, n, 1, 1).expand(x.size(0), n, 1, cfg.text_width)
        emb = torch.matmul(x.gather(2, idx).squeeze(2), self.text_projection)  # [B,N,E]
        emb = F.normalize(emb, dim=-1)
        normal = F.normalize(emb[:, : self.num_normal, :].mean(dim=1), dim=-1)
        abnormal = F.normalize(emb[:, self.num_normal :, :].mean(dim=1), dim=-1)
        return torch.stack([normal, abnormal], dim=2)

    def kmeans_labels(self, data: Tensor) -> Tensor:
        """kmeans_labels is HSF's clustering made deterministic and on-device:
        centres start at evenly spaced ranks of the top-k list, then a fixed
        number of Lloyd steps; a cluster that empties keeps its centre.
        data: [B,k,D] (detached); returns labels [B,k]."""
        centres = data.index_select(1, self.kmeans_init)
        ids = self.cluster_ids
        for _ in range(self.cfg.kmeans_iters):
            labels = self._assign(data, centres)
            onehot = (labels.unsqueeze(-1) == ids).type_as(data)  # [B,k,K]
            counts = onehot.sum(dim=1).unsqueeze(-1)  # [B,K,1]
            means = torch.matmul(onehot.transpose(1, 2), data) / counts.clamp(min=1.0)
            centres = torch.where(counts > 0, means, centres)
        return self._assign(data, centres)

    @staticmethod
    def _assign(data: Tensor, centres: Tensor) -> Tensor:
        # ||x-c||^2 without the per-point constant ||x||^2; ties go to the lowest id.
        dist = (centres * centres).sum(-1).unsqueeze(1) - 2.0 * torch.matmul(data, centres.transpose(1, 2))
        return dist.argmin(dim=-1)

    def hsf(self, tokens: List[Tensor], logits: Tensor) -> Tensor:
        """hsf is Hybrid Semantic Fusion: cluster the 5k most anomalous patches
        (concatenated multi-layer tokens), average each cluster's layer-mean
        token, average the non-empty clusters and normalise -> [B,E]."""
        p_abn = logits.softmax(dim=-1)[:, :, 1]
        top = torch.topk(p_abn, self.topk, dim=1).indices  # [B,k]
        idx = top.unsqueeze(-1).expand(-1, -1, tokens[0].size(-1))
        selected = [t.gather(1, idx) for t in tokens]
        labels = self.kmeans_labels(torch.cat(selected, dim=-1).detach())
        layer_mean = torch.stack(selected, dim=0).mean(dim=0)  # [B,k,E]
        onehot = (labels.unsqueeze(-1) == self.cluster_ids).type_as(layer_mean)
        counts = onehot.sum(dim=1)  # [B,K]
        centres = torch.matmul(onehot.transpose(1, 2), layer_mean) / counts.clamp(min=1.0).unsqueeze(-1)
        present = (counts > 0).type_as(layer_mean)
        fused = (centres * present.unsqueeze(-1)).sum(dim=1) / present.sum(dim=1, keepdim=True)
        return F.normalize(fused, dim=-1)

    # -- forward ------------------------------------------------------------

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor]:
        cfg = self.cfg
        # Dynamic prompts from the unprompted pass; upstream runs it under
        # no_grad, so no gradient reaches the input through it.
        pooled0 = self.encode_unprompted(image.detach())
        dyn_v = torch.stack([h(pooled0) for h in self.dynamic_visual_prompt_generator.head], dim=1)
        dyn_t = torch.stack([h(pooled0) for h in self.dynamic_text_prompt_generator.head], dim=1)

        feats, pooled = self.encode_prompted(image, dyn_v)
        patch = [F.normalize(h(f), dim=-1) for h, f in zip(self.patch_token_layer.head, feats)]
        cls = F.normalize(self.cls_token_layer.head[0](pooled), dim=-1)
        text = self.encode_text(dyn_t)  # [B,E,2]

        # Averaging the layers' logits before the (linear) bilinear upsample
        # equals upsampling each layer and averaging, at a quarter of the cost.
        logits = torch.stack([100.0 * torch.matmul(t, text) for t in patch], dim=0).mean(dim=0)  # [B,P,2]
        grid = logits.transpose(1, 2).reshape(-1, 2, cfg.grid, cfg.grid)
        up = F.interpolate(grid, size=(cfg.image_size, cfg.image_size), mode="bilinear", align_corners=True)
        prob = up.softmax(dim=1)
        pixel = (prob[:, 1, :, :] + 1.0 - prob[:, 0, :, :]) / 2.0

        fused = F.normalize(cfg.hsf_alpha * self.hsf(patch, logits) + (1.0 - cfg.hsf_alpha) * cls, dim=-1)
        image_logits = 100.0 * torch.matmul(fused.unsqueeze(1), text).squeeze(1)  # [B,2]
        return pixel, image_logits.softmax(dim=-1)[:, 1]


# --------------------------------------------------------------------------
# Official key mapping
# --------------------------------------------------------------------------

CLIP_SOURCE = "clip"
ADAPTER_SOURCE = "adaclip"


BLOCK_PARAMS = (
    "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias",
    "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
    "ln_2.weight", "ln_2.bias",
)
_PLACEHOLDERS = {
    "{N}": r"(?P<N>\d+)",
    "{WB}": r"(?P<WB>weight|bias)",
    "{BLOCK}": "(?P<BLOCK>" + "|".join(re.escape(p) for p in BLOCK_PARAMS) + ")",
}


@dataclass(frozen=True)
class KeyRule:
    """KeyRule maps the keys of one official file that match `pattern` (after
    prefix stripping) onto the model parameter `target`. Patterns are dotted
    names with placeholders: {N} a layer/head index, {WB} weight or bias,
    {BLOCK} one of BLOCK_PARAMS. `transform` names the only conversion besides
    the cast to fp32."""

    source: str
    pattern: str
    target: str
    transform: str = ""

    def match(self, key: str) -> Optional[str]:
        rx = re.escape(self.pattern)
        for ph, group in _PLACEHOLDERS.items():
            rx = rx.replace(re.escape(ph), group)
        m = re.fullmatch(rx, key)
        if m is None:
            return None
        out = self.target
        for name, value in m.groupdict().items():
            out = out.replace("{" + name + "}", value)
        return out


# KEY_TABLE is the documented mapping (docs/adaclip-export.md holds
# key_table_markdown() verbatim, and a test keeps the two equal). The model's
# names were chosen to coincide with the official ones, so every rule is an
# identity rename; the table still matters because it is the contract the
# loader enforces: each model parameter comes from exactly one rule of
# exactly one file.
KEY_TABLE: List[KeyRule] = [
    KeyRule(CLIP_SOURCE, "visual.conv1.weight", "visual.conv1.weight"),
    KeyRule(CLIP_SOURCE, "visual.class_embedding", "visual.class_embedding"),
    KeyRule(CLIP_SOURCE, "visual.positional_embedding", "visual.positional_embedding",
            "patch grid resized bicubic (align_corners=False) from 24x24 to S/14 x S/14, CLS row kept"),
    KeyRule(CLIP_SOURCE, "visual.ln_pre.{WB}", "visual.ln_pre.{WB}"),
    KeyRule(CLIP_SOURCE, "visual.transformer.resblocks.{N}.{BLOCK}", "visual.transformer.resblocks.{N}.{BLOCK}"),
    KeyRule(CLIP_SOURCE, "visual.ln_post.{WB}", "visual.ln_post.{WB}"),
    KeyRule(CLIP_SOURCE, "visual.proj", "visual.proj"),
    KeyRule(CLIP_SOURCE, "token_embedding.weight", "token_embedding.weight"),
    KeyRule(CLIP_SOURCE, "positional_embedding", "positional_embedding"),
    KeyRule(CLIP_SOURCE, "transformer.resblocks.{N}.{BLOCK}", "transformer.resblocks.{N}.{BLOCK}"),
    KeyRule(CLIP_SOURCE, "ln_final.{WB}", "ln_final.{WB}"),
    KeyRule(CLIP_SOURCE, "text_projection", "text_projection"),
    KeyRule(CLIP_SOURCE, "logit_scale", "logit_scale", "loaded but unused (AdaCLIP scales logits by a fixed 100)"),
    KeyRule(ADAPTER_SOURCE, "text_prompter.static_prompts.{N}", "text_prompter.static_prompts.{N}",
            "N = 0 is loaded but unused, as upstream (text block 0 is never prompted)"),
    KeyRule(ADAPTER_SOURCE, "visual_prompter.static_prompts.{N}", "visual_prompter.static_prompts.{N}"),
    KeyRule(ADAPTER_SOURCE, "patch_token_layer.head.{N}.{WB}", "patch_token_layer.head.{N}.{WB}"),
    KeyRule(ADAPTER_SOURCE, "cls_token_layer.head.{N}.{WB}", "cls_token_layer.head.{N}.{WB}"),
    KeyRule(ADAPTER_SOURCE, "dynamic_visual_prompt_generator.head.{N}.{WB}", "dynamic_visual_prompt_generator.head.{N}.{WB}"),
    KeyRule(ADAPTER_SOURCE, "dynamic_text_prompt_generator.head.{N}.{WB}", "dynamic_text_prompt_generator.head.{N}.{WB}"),
]

SOURCE_FILES = {CLIP_SOURCE: "ViT-L-14-336px.pt (`--clip`)", ADAPTER_SOURCE: "AdaCLIP `.pth` (`--weights`)"}


def key_table_markdown() -> str:
    """key_table_markdown renders KEY_TABLE for docs/adaclip-export.md."""
    rows = [
        "| file | official key (after stripping `module.` / `clip_model.`) | model parameter | conversion besides the fp32 cast |",
        "|---|---|---|---|",
    ]
    for r in KEY_TABLE:
        rows.append(f"| {SOURCE_FILES[r.source]} | `{r.pattern}` | `{r.target}` | {r.transform or '-'} |")
    return "\n".join(rows) + "\n"


# Keys of the OpenAI JIT archive that are metadata, not weights.
IGNORED_KEYS = {CLIP_SOURCE: {"input_resolution", "context_length", "vocab_size"}, ADAPTER_SOURCE: set()}
STRIPPED_PREFIXES = ("module.", "clip_model.")


def strip_prefixes(key: str) -> str:
    """strip_prefixes removes leading `module.` (DataParallel) and
    `clip_model.` (AdaCLIP_Trainer) prefixes, in any order and number."""
    changed = True
    while changed:
        changed = False
        for p in STRIPPED_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def map_key(source: str, key: str) -> Optional[str]:
    """map_key returns the model parameter an official key loads into, or None
    when no rule of that source matches."""
    key = strip_prefixes(key)
    for rule in KEY_TABLE:
        if rule.source == source:
            target = rule.match(key)
            if target is not None:
                return target
    return None


def resize_positional_embedding(pos: Tensor, grid: int) -> Tensor:
    """resize_positional_embedding is open_clip's resize_pos_embed: the CLS row
    is kept and the square patch grid is resized bicubically
    (align_corners=False) in fp32 to grid x grid."""
    pos = pos.float()
    old = int(round(math.sqrt(pos.size(0) - 1)))
    if old * old != pos.size(0) - 1:
        raise ValueError(f"visual.positional_embedding has {pos.size(0)} rows, not 1 + a square grid")
    if old == grid:
        return pos.clone()
    cls, img = pos[:1], pos[1:]
    img = img.reshape(1, old, old, -1).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=(grid, grid), mode="bicubic", align_corners=False)
    img = img.permute(0, 2, 3, 1).reshape(grid * grid, -1)
    return torch.cat([cls, img], dim=0)


@dataclass
class LoadReport:
    """LoadReport says what load_official did: which model parameters each
    file filled, and which file keys it ignored or found unexpected."""

    loaded: Dict[str, str] = field(default_factory=dict)  # model key -> "source:file key"
    ignored: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    resized: List[str] = field(default_factory=list)


class KeyMappingError(ValueError):
    """KeyMappingError lists every key problem found in one pass, so a user
    sees all of them at once."""


def load_official(model: AdaCLIP, clip_state: Dict[str, Tensor], adaclip_state: Dict[str, Tensor], allow_unexpected: bool = False) -> LoadReport:
    """load_official copies an OpenAI CLIP state dict and an AdaCLIP adapter
    state dict into `model` through KEY_TABLE: prefixes are stripped, values
    cast to fp32, the visual positional embedding resized to the model's grid.
    It is strict where upstream's strict=False was silent: a missing key, a
    key given twice, a shape mismatch (e.g. a checkpoint trained with another
    prompting depth or length) or an unexpected key raises KeyMappingError
    listing all of them; unexpected keys can be downgraded to the report."""
    params = dict(model.named_parameters())
    report = LoadReport()
    problems: List[str] = []
    values: Dict[str, Tensor] = {}
    for source, state in ((CLIP_SOURCE, clip_state), (ADAPTER_SOURCE, adaclip_state)):
        for raw_key, value in state.items():
            key = strip_prefixes(raw_key)
            if key in IGNORED_KEYS[source]:
                report.ignored.append(f"{source}:{raw_key}")
                continue
            target = map_key(source, key)
            if target is None or target not in params:
                report.unexpected.append(f"{source}:{raw_key}")
                continue
            if target in values:
                problems.append(f"{target}: given twice ({report.loaded[target]} and {source}:{raw_key})")
                continue
            if not isinstance(value, Tensor):
                problems.append(f"{source}:{raw_key}: not a tensor ({type(value).__name__})")
                continue
            value = value.detach().float()
            if target == "visual.positional_embedding" and value.dim() == 2 and value.shape != params[target].shape:
                try:
                    value = resize_positional_embedding(value, model.cfg.grid)
                    report.resized.append(target)
                except ValueError as e:
                    problems.append(f"{source}:{raw_key}: {e}")
                    continue
            if value.shape != params[target].shape:
                problems.append(
                    f"{source}:{raw_key}: shape {list(value.shape)} does not fit {target} {list(params[target].shape)}"
                )
                continue
            values[target] = value
            report.loaded[target] = f"{source}:{raw_key}"
    missing = [k for k in params if k not in values]
    if missing:
        by_source: Dict[str, List[str]] = {}
        for k in missing:
            src = ADAPTER_SOURCE if map_key(ADAPTER_SOURCE, k) == k else CLIP_SOURCE
            by_source.setdefault(src, []).append(k)
        for src, keys in by_source.items():
            shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
            problems.append(f"missing from the {src} file: {shown}")
    if report.unexpected and not allow_unexpected:
        shown = ", ".join(report.unexpected[:12]) + (f", ... ({len(report.unexpected)} in all)" if len(report.unexpected) > 12 else "")
        problems.append(f"unexpected keys (not in the key table): {shown}")
    if problems:
        raise KeyMappingError("cannot load the official weights:\n  " + "\n  ".join(problems))
    with torch.no_grad():
        for k, v in values.items():
            params[k].copy_(v)
    return report


def official_state_dicts(model: AdaCLIP, source_grid: Optional[int] = None) -> Tuple[Dict[str, Tensor], Dict[str, Tensor]]:
    """official_state_dicts writes `model` back out in the official layouts:
    the OpenAI CLIP dict (with the metadata entries and the positional
    embedding at `source_grid`) and the AdaCLIP trainer's adapter dict with
    `clip_model.` prefixes. Tests use it to fake official files."""
    cfg = model.cfg
    grid = cfg.source_grid if source_grid is None else source_grid
    clip: Dict[str, Tensor] = {}
    adapter: Dict[str, Tensor] = {}
    for name, p in model.named_parameters():
        rule_source = next(r.source for r in KEY_TABLE if map_key(r.source, name) == name)
        v = p.detach().clone()
        if rule_source == CLIP_SOURCE:
            if name == "visual.positional_embedding" and grid != cfg.grid:
                v = resize_positional_embedding(v, grid)
            clip[name] = v.half()  # OpenAI archives hold fp16 weights
        else:
            adapter["clip_model." + name] = v
    clip["input_resolution"] = torch.tensor(grid * cfg.patch_size)
    clip["context_length"] = torch.tensor(cfg.context_length)
    clip["vocab_size"] = torch.tensor(cfg.vocab_size)
    return clip, adapter


def count_parameters(model: AdaCLIP) -> Tuple[int, int]:
    """count_parameters returns (CLIP backbone, AdaCLIP adapter) parameter counts."""
    clip = adapter = 0
    for name, p in model.named_parameters():
        if map_key(ADAPTER_SOURCE, name) == name:
            adapter += p.numel()
        else:
            clip += p.numel()
    return clip, adapter
