"""Checkpoint interoperability: our checkpoints  <->  official VideoMAE / V2 / MGMAE  <->  HF transformers.

``load_model(path)`` recognises a checkpoint by its keys and converts it on load:

* ours: a ``torch.save`` dict with ``format="mgmae"`` (carries its config), or our safetensors
  export (weights + ``format``/``kind``/``arch``/``config`` JSON in the metadata);
* official VideoMAE / VideoMAE V2 / MGMAE ``.pth`` files: the state dict bare or under ``model`` /
  ``module`` (prefixes ``module.``, ``_orig_mod.``, ``backbone.`` removed), pre-training keys
  (``encoder.*``, ``encoder_to_decoder.weight``, ``mask_token``, ``decoder.*``) or fine-tuned ones
  (``blocks.*``, ``fc_norm``/``norm``, ``head``); the architecture is inferred from the shapes;
* Hugging Face ``transformers`` VideoMAE directories (``config.json`` + ``model.safetensors`` or
  ``pytorch_model.bin``) of ``VideoMAEForPreTraining``, ``VideoMAEModel`` and
  ``VideoMAEForVideoClassification``.

Everything goes through one *canonical* key layout, the official fine-tuning one without
prefixes (``patch_embed.proj``, ``blocks.i.attn.qkv``, ``norm``, ``fc_norm``, ``head``) plus the
pre-training decoder keys (``encoder_to_decoder``, ``mask_token``, ``decoder.blocks.i...``).
Missing or unexpected keys are never silent: they are listed in ``model.load_report``, logged,
and raise unless ``strict=False``.

``convert(src, dst, to="mgmae" | "hf" | "official")`` writes our safetensors (or ``.pth``), a
transformers-loadable directory, or an official-layout ``.pth``; ``cli_main`` is ``mgmae convert``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mgmae.commands import add_common_flags, check_output, command
from mgmae.models import SIZES, parse_name
from mgmae.serialization import nonfinite_keys, torch_load
from mgmae.models.mae import PretrainVideoMAE
from mgmae.models.vit import VisionTransformer, sinusoid_table

logger = logging.getLogger(__name__)

TASKS = ("pretrain", "classify", "encoder")
TARGETS = ("mgmae", "hf", "official")
FORMAT = "mgmae"

# overrides that change how the model is built but are not part of the architecture
BUILD_KWARGS = {
    "pretrain": ("drop_path_rate", "grad_checkpointing"),
    "classify": ("drop_path_rate", "drop_rate", "attn_drop_rate", "fc_drop_rate", "init_scale",
                 "grad_checkpointing"),
}
BUILD_KWARGS["encoder"] = BUILD_KWARGS["classify"]
ALIASES = {"use_mean_pooling": "mean_pooling", "qv_bias": "qkv_bias", "input_size": "img_size",
           "all_frames": "num_frames"}


# --------------------------------------------------------------------------- descriptions
@dataclass
class Arch:
    """Everything needed to rebuild a model; what shapes cannot tell comes from configs or overrides."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    num_frames: int = 16  # not inferable from weights (positions are fixed sinusoids)
    img_size: int = 224  # idem
    qkv_bias: bool = True
    final_norm: bool = True  # LayerNorm on the encoder output (``norm``)
    mean_pooling: bool = False  # classifier: mean of tokens + ``fc_norm`` (else token 0)
    num_classes: int = 0
    decoder_embed_dim: int | None = None
    decoder_depth: int | None = None
    decoder_num_heads: int | None = None
    norm_pix_loss: bool = True
    pos_embed: str = "sincos_1d"  # fixed position table (not in the weights): sincos_1d | sincos_3d
    norm_eps: float = 1e-6  # block norms and ``norm``
    fc_norm_eps: float = 1e-6
    decoder_norm_eps: float = 1e-6

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Arch":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class LoadReport:
    """What :func:`load_model` did: attached to the returned model as ``model.load_report``."""

    path: str
    source: str  # mgmae | mgmae-safetensors | official | hf
    source_kind: str  # pretrain | classify | encoder
    task: str
    arch: dict[str, Any]
    loaded: int = 0  # tensors copied from the checkpoint
    initialised: list[str] = field(default_factory=list)  # freshly initialised on purpose (task change)
    dropped: list[str] = field(default_factory=list)  # checkpoint tensors not needed for the task
    missing: list[str] = field(default_factory=list)  # needed, absent from the checkpoint
    unexpected: list[str] = field(default_factory=list)  # present, understood by nobody
    mismatched: list[str] = field(default_factory=list)  # present with another shape
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] | None = None  # our Config dict, when the checkpoint carried one
    # what the file says about the model besides weights: class_names, best_acc1, best_epoch,
    # pretrained (our fine-tuning checkpoints; a Hugging Face directory's id2label)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        lines = [f"loaded {self.path} ({self.source}, {self.source_kind}) as task={self.task}: "
                 f"{self.loaded} tensors"]
        for name in ("initialised", "dropped", "missing", "unexpected", "mismatched"):
            keys = getattr(self, name)
            if keys:
                lines.append(f"  {name} ({len(keys)}): {_short(keys)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _short(keys: list[str], n: int = 8) -> str:
    keys = _collapse(keys)
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def _collapse(keys: list[str]) -> list[str]:
    """``blocks.0.x, blocks.1.x`` -> ``blocks.*.x`` for readable messages."""
    out: list[str] = []
    for k in keys:
        s = re.sub(r"\.\d+\.", ".*.", k)
        if s not in out:
            out.append(s)
    return out


# --------------------------------------------------------------------------- canonical keys
DECODER_PREFIXES = ("decoder.", "encoder_to_decoder.", "mask_token")
TAIL_PREFIXES = ("norm.", "fc_norm.", "head.")


# heads of other VideoMAE-family pre-training models that the video encoder does not need: dropped
# (listed in the report), like our own decoder when fine-tuning
FOREIGN_HEADS = {
    "clip_decoder.": "UMT's CLIP-distillation heads (clip_decoder.*, unmasked_teacher "
                     "modeling_pretrain_umt.py)",
    "prototypes": "SIGMA's Sinkhorn-Knopp prototypes (prototypes)",
    "memory": "SIGMA's memory bank (memory, memory_pred_head.*)",
}


def _family_hint(unexpected: list[str]) -> str:
    """What a checkpoint's unreadable keys say about the model it comes from."""
    if any(re.fullmatch(r"blocks\.\d+\.gamma_[12]", k) for k in unexpected):
        return (" blocks.*.gamma_1 / gamma_2 are LayerScale weights (a VideoMAE-family ViT built "
                "with init_values > 0, e.g. UMT or VideoMAE V2 models so configured); our blocks "
                "have no LayerScale, so such a model cannot be loaded without changing its outputs")
    return ""


def _decoder_hint(report: "LoadReport", task: str) -> str:
    """Why a pre-training checkpoint's decoder cannot be ours, from its keys and shapes."""
    if task != "pretrain":
        return ""
    if any(re.match(r"(decoder|encoder_to_decoder)\.\d+\.", k) for k in report.dropped):
        return (" The checkpoint has several decoders (decoder.N.*, encoder_to_decoder.N: MME's "
                "motion-trajectory targets, XinyuSun/MME pretrain/model.py); our pre-training model "
                "has one pixel decoder: load the encoder with task='encoder' or 'classify'")
    if any(m.startswith("decoder.head.weight") for m in report.mismatched):
        return (" Its decoder predicts other targets than the pixels of a VideoMAE decoder (features "
                "of a teacher, such as SIGMA's DINO features): load the "
                "encoder with task='encoder' or 'classify'")
    return ""


def _part(key: str) -> str:
    if key.startswith(DECODER_PREFIXES):
        return "decoder"
    if key.startswith(TAIL_PREFIXES):
        return "tail"
    return "backbone"


def _to_canonical_ours(key: str, kind: str) -> str:
    """Key of our model of ``kind`` -> canonical key."""
    if kind == "pretrain" and key.startswith("encoder."):
        return key[len("encoder."):]
    return key


def _from_canonical_ours(key: str, kind: str) -> str:
    if kind == "pretrain" and _part(key) != "decoder":
        return "encoder." + key
    return key


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrappers' prefixes (DDP ``module.``, torch.compile ``_orig_mod.``, ``backbone.``) and
    the pre-training ``encoder.`` prefix (``encoder_to_decoder`` is not a prefix match)."""
    out = {}
    for k, v in sd.items():
        changed = True
        while changed:
            changed = False
            for p in ("module.", "_orig_mod.", "backbone.", "encoder."):
                if k.startswith(p):
                    k, changed = k[len(p):], True
        out[k] = v
    return out


def _kind_of(canon: dict[str, torch.Tensor]) -> str:
    if any(_part(k) == "decoder" for k in canon):
        return "pretrain"
    if "head.weight" in canon:
        return "classify"
    return "encoder"


# --------------------------------------------------------------------------- HF key mapping
_HF_BLOCK = [  # (ours, hf) per transformer block, weight and bias
    ("norm1", "layernorm_before"),
    ("norm2", "layernorm_after"),
    ("attn.proj", "attention.output.dense"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
]
_HF_ROOT = [  # (canonical, hf without the "videomae." prefix where it applies)
    ("patch_embed.proj", "embeddings.patch_embeddings.projection"),
    ("norm", "layernorm"),
]


def _hf_to_canonical(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """HF VideoMAE keys -> canonical; returns (canonical, keys that were not understood)."""
    canon: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, v in sd.items():
        k = key.removeprefix("videomae.")
        m = re.fullmatch(r"(encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)", k)
        if m:
            base = ("blocks." if m[1] == "encoder.layer" else "decoder.blocks.") + m[2] + "."
            rest = m[3]
            a = re.fullmatch(r"attention\.attention\.(query|key|value)\.weight", rest)
            if a:
                qkv.setdefault(base, {})[a[1]] = v
                continue
            if rest in ("attention.attention.q_bias", "attention.attention.query.bias"):
                canon[base + "attn.q_bias"] = v
                continue
            if rest in ("attention.attention.v_bias", "attention.attention.value.bias"):
                canon[base + "attn.v_bias"] = v
                continue
            for ours, hf in _HF_BLOCK:
                if rest.startswith(hf + "."):
                    canon[base + ours + rest[len(hf):]] = v
                    break
            else:
                unknown.append(key)
            continue
        for ours, hf in _HF_ROOT:
            if k.startswith(hf + "."):
                canon[ours + k[len(hf):]] = v
                break
        else:
            if k.startswith("classifier."):
                canon["head" + k[len("classifier"):]] = v
            elif k.startswith(("fc_norm.", "encoder_to_decoder.", "decoder.norm.", "decoder.head."))\
                    or k == "mask_token":
                canon[k] = v
            else:
                unknown.append(key)
    for base, parts in qkv.items():
        if set(parts) == {"query", "key", "value"}:
            canon[base + "attn.qkv.weight"] = torch.cat([parts["query"], parts["key"], parts["value"]])
        else:  # incomplete: keep what there is as not understood, the qkv weight will be missing
            hf_base = base.replace("decoder.blocks.", "decoder.decoder_layers.").replace(
                "blocks.", "encoder.layer.")
            unknown += [f"{hf_base}attention.attention.{p}.weight" for p in parts]
    return canon, unknown


def _canonical_to_hf(canon: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """Canonical -> HF keys of ``VideoMAEForPreTraining`` / ``...ForVideoClassification`` /
    ``VideoMAEModel``; q/v biases are written as ``q_bias``/``v_bias`` (the layout of the
    published checkpoints, read by transformers 4.x and 5.x)."""
    pre = "" if kind == "encoder" else "videomae."
    out: dict[str, torch.Tensor] = {}
    for k, v in canon.items():
        m = re.fullmatch(r"(decoder\.)?blocks\.(\d+)\.(.+)", k)
        if m:
            base = (f"decoder.decoder_layers.{m[2]}." if m[1] else f"{pre}encoder.layer.{m[2]}.")
            rest = m[3]
            if rest == "attn.qkv.weight":
                q, kk, vv = v.chunk(3)
                for name, t in (("query", q), ("key", kk), ("value", vv)):
                    out[f"{base}attention.attention.{name}.weight"] = t
                continue
            if rest in ("attn.q_bias", "attn.v_bias"):
                out[f"{base}attention.attention.{rest[5:]}"] = v
                continue
            for ours, hf in _HF_BLOCK:
                if rest.startswith(ours + "."):
                    out[base + hf + rest[len(ours):]] = v
                    break
            else:
                raise ValueError(f"cannot export {k!r} to the transformers layout")
            continue
        if k.startswith("patch_embed.proj."):
            out[pre + "embeddings.patch_embeddings.projection" + k[len("patch_embed.proj"):]] = v
        elif k.startswith("norm."):
            out[pre + "layernorm" + k[len("norm"):]] = v
        elif k.startswith("head."):
            out["classifier" + k[len("head"):]] = v
        elif k.startswith("fc_norm.") and kind == "encoder":
            continue  # VideoMAEModel has no fc_norm; dropped (reported by the caller)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- reading files
def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError as e:  # pragma: no cover - safetensors is a dependency
        raise ImportError("reading .safetensors needs the `safetensors` package") from e
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return load_file(str(path)), meta
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path} is not a readable safetensors file ({type(e).__name__}: {e})") from e


def _find_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("model", "module", "state_dict", "model_state"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
                return inner
        tensors = {k: v for k, v in obj.items() if torch.is_tensor(v)}
        if tensors and len(tensors) == len(obj):
            return tensors
    keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(f"{path} holds no state dict (top-level keys: {keys}); expected a bare state "
                     f"dict or one under 'model' / 'module'")


def _looks_hf(sd: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("videomae.", "embeddings.patch_embeddings.")) for k in sd)


def _looks_official(canon: dict[str, torch.Tensor]) -> bool:
    return "patch_embed.proj.weight" in canon


@dataclass
class _Source:
    fmt: str
    canon: dict[str, torch.Tensor]
    kind: str
    hints: dict[str, Any]  # architecture facts known besides the shapes
    config: dict[str, Any] | None = None
    unknown: list[str] = field(default_factory=list)  # keys that could not be mapped
    info: dict[str, Any] = field(default_factory=dict)  # see LoadReport.info


_INFO_KEYS = ("class_names", "best_acc1", "best_epoch", "pretrained")


def _read(path: Path, trusted: bool | None = None) -> _Source:
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        if (path / "config.json").is_file():
            return _read_hf_dir(path, trusted=trusted)
        raise ValueError(f"{path} is a directory without config.json; expected a Hugging Face "
                         f"VideoMAE directory (config.json + model.safetensors / pytorch_model.bin)")
    if path.suffix == ".safetensors":
        sd, meta = _read_safetensors(path)
        if meta.get("format") == FORMAT:
            canon = _strip_prefixes(sd)
            kind = _kind_of(canon)
            hints = json.loads(meta["arch"]) if "arch" in meta else {}
            config = json.loads(meta["config"]) if "config" in meta else None
            if not hints and config:
                hints = _hints_from_config(config)
            return _Source("mgmae-safetensors", canon, kind, hints, config)
        return _from_foreign_state_dict(sd, path)
    obj = torch_load(path, trusted=trusted)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        sd = obj.get("model")
        if not isinstance(sd, dict):
            raise ValueError(f"{path}: mgmae checkpoint without a 'model' state dict")
        canon = _strip_prefixes(sd)
        config = obj.get("config") if isinstance(obj.get("config"), dict) else None
        hints = _hints_from_config(config) if config else {}
        extra = obj.get("extra") if isinstance(obj.get("extra"), dict) else {}
        arch = extra.get("arch")
        if isinstance(arch, dict):
            hints.update(arch)
        info = {k: extra[k] for k in _INFO_KEYS if extra.get(k) is not None}
        return _Source("mgmae", canon, _kind_of(canon), hints, config, info=info)
    sd = _find_state_dict(obj, path)
    src = _from_foreign_state_dict(sd, path)
    if isinstance(obj, dict) and isinstance(obj.get("mgmae_arch"), dict):  # our official export
        src.hints.update(obj["mgmae_arch"])
    return src


def _from_foreign_state_dict(sd: dict[str, torch.Tensor], path: Path) -> _Source:
    if _looks_hf(sd):
        cfg_path = path.parent / "config.json"
        if cfg_path.is_file():
            return _read_hf_dir(path.parent, weights=sd)
        raise ValueError(f"{path} holds Hugging Face VideoMAE weights but there is no config.json "
                         f"next to it; pass the model directory (config.json + weights)")
    canon = _strip_prefixes(sd)
    if not _looks_official(canon):
        raise ValueError(f"{path} is not a VideoMAE/MGMAE checkpoint: no patch_embed.proj.weight "
                         f"among its {len(sd)} keys (first keys: {list(sd)[:6]})")
    return _Source("official", canon, _kind_of(canon), {})


def _read_hf_dir(path: Path, weights: dict[str, torch.Tensor] | None = None,
                 trusted: bool | None = None) -> _Source:
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("model_type") != "videomae":
        raise ValueError(f"{path}/config.json has model_type={cfg.get('model_type')!r}; "
                         f"only 'videomae' models can be converted")
    if weights is None:
        weights = _read_hf_weights(path, trusted)
    canon, unknown = _hf_to_canonical(weights)
    kind = _kind_of(canon)
    hints = _hints_from_hf_config(cfg, kind)
    info = {}
    id2label = cfg.get("id2label") or {}
    names = [id2label.get(str(i), id2label.get(i)) for i in range(len(id2label))]
    if names and all(isinstance(n, str) for n in names) and names != [f"LABEL_{i}" for i in range(len(names))]:
        info["class_names"] = names
    return _Source("hf", canon, kind, hints, None, unknown, info=info)


def _read_hf_weights(path: Path, trusted: bool | None = None) -> dict[str, torch.Tensor]:
    if (path / "model.safetensors").is_file():
        return _read_safetensors(path / "model.safetensors")[0]
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / index_name
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            sd: dict[str, torch.Tensor] = {}
            for f in files:
                part = (_read_safetensors(path / f)[0] if f.endswith(".safetensors")
                        else torch_load(path / f, trusted=trusted))
                sd.update(part)
            return sd
    if (path / "pytorch_model.bin").is_file():
        return torch_load(path / "pytorch_model.bin", trusted=trusted)
    raise FileNotFoundError(f"{path} has config.json but no model.safetensors or pytorch_model.bin")


def _square(v: Any, name: str) -> int:
    if isinstance(v, (list, tuple)):
        if len(set(v)) != 1:
            raise ValueError(f"non-square {name}={v} is not supported")
        v = v[0]
    return int(v)


def _hints_from_hf_config(cfg: dict[str, Any], kind: str) -> dict[str, Any]:
    act = cfg.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"hidden_act={act!r} is not supported (VideoMAE uses exact 'gelu')")
    hidden = int(cfg.get("hidden_size", 768))
    mlp_ratio = int(cfg.get("intermediate_size", 4 * hidden)) / hidden
    use_mean = bool(cfg.get("use_mean_pooling", True))
    hints: dict[str, Any] = dict(
        embed_dim=hidden, depth=int(cfg.get("num_hidden_layers", 12)),
        num_heads=int(cfg.get("num_attention_heads", 12)), mlp_ratio=mlp_ratio,
        patch_size=_square(cfg.get("patch_size", 16), "patch_size"),
        tubelet_size=int(cfg.get("tubelet_size", 2)), in_chans=int(cfg.get("num_channels", 3)),
        num_frames=int(cfg.get("num_frames", 16)),
        img_size=_square(cfg.get("image_size", 224), "image_size"),
        qkv_bias=bool(cfg.get("qv_bias", cfg.get("qkv_bias", True))),
        final_norm=not use_mean, mean_pooling=use_mean and kind == "classify",
        norm_pix_loss=bool(cfg.get("norm_pix_loss", True)),
        norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        # transformers builds fc_norm and decoder.norm with nn.LayerNorm's default eps
        fc_norm_eps=float(cfg.get("mgmae_fc_norm_eps", 1e-5)),
        decoder_norm_eps=float(cfg.get("mgmae_decoder_norm_eps", 1e-5)),
    )
    if kind == "pretrain":
        dh = int(cfg.get("decoder_hidden_size", 384))
        d_ratio = int(cfg.get("decoder_intermediate_size", 4 * dh)) / dh
        if not math.isclose(d_ratio, mlp_ratio):
            raise ValueError(f"decoder_intermediate_size/decoder_hidden_size = {d_ratio} differs from "
                             f"the encoder's MLP ratio {mlp_ratio}; not supported by our decoder")
        hints.update(decoder_embed_dim=dh, decoder_depth=int(cfg.get("decoder_num_hidden_layers", 4)),
                     decoder_num_heads=int(cfg.get("decoder_num_attention_heads", 6)))
    return hints


def _hints_from_config(config: dict[str, Any]) -> dict[str, Any]:
    """Architecture facts of our Config dict (model.name gives the heads)."""
    model = config.get("model") or {}
    data = config.get("data") or {}
    hints: dict[str, Any] = {}
    for k_cfg, k_arch in (("num_frames", "num_frames"), ("img_size", "img_size")):
        if isinstance(data.get(k_cfg), int):
            hints[k_arch] = data[k_cfg]
    if isinstance(model.get("norm_pix_loss"), bool):
        hints["norm_pix_loss"] = model["norm_pix_loss"]
    if isinstance(model.get("decoder_num_heads"), int):
        hints["decoder_num_heads"] = model["decoder_num_heads"]
    if isinstance(model.get("pos_embed"), str):
        hints["pos_embed"] = model["pos_embed"]
    name = model.get("name")
    if isinstance(name, str):
        for candidate in (name, name.removeprefix("mae_"), "mae_" + name):
            try:
                _, spec, patch = parse_name(candidate)
            except ValueError:
                continue
            hints.setdefault("num_heads", spec.num_heads)
            hints.setdefault("_spec_decoder", (spec.decoder_embed_dim, spec.decoder_num_heads))
            break
    return hints


# --------------------------------------------------------------------------- architecture inference
def _heads_for(dim: int, what: str, encoder_dim: int | None = None) -> int:
    if what == "decoder":
        for spec in SIZES.values():  # the decoder that goes with this encoder size first
            if spec.embed_dim == encoder_dim and spec.decoder_embed_dim == dim:
                return spec.decoder_num_heads
        for spec in SIZES.values():
            if spec.decoder_embed_dim == dim:
                return spec.decoder_num_heads
    for spec in SIZES.values():
        if spec.embed_dim == dim:
            return spec.num_heads
    key = "decoder_num_heads" if what == "decoder" else "num_heads"
    known = sorted({s.embed_dim for s in SIZES.values()})
    raise ValueError(f"cannot infer the number of attention heads of a {what} of width {dim} "
                     f"(standard widths: {known}); pass {key}=... to load_model / --{key.replace('_', '-')}")


def _infer_arch(src: _Source, overrides: dict[str, Any]) -> tuple[Arch, list[str]]:
    """Architecture from shapes, then hints (config / HF config / our metadata), then overrides."""
    c, h, notes = src.canon, dict(src.hints), []
    spec_dec = h.pop("_spec_decoder", None)
    w = c.get("patch_embed.proj.weight")
    if w is None or w.ndim != 5:
        raise ValueError("checkpoint has no 3D patch embedding 'patch_embed.proj.weight' "
                         f"(found {None if w is None else tuple(w.shape)})")
    D, C, ts, p, p2 = w.shape
    if p != p2:
        raise ValueError(f"non-square patches {p}x{p2} are not supported")
    depth = len({int(m[1]) for k in c if (m := re.match(r"blocks\.(\d+)\.", k))})
    fc1 = c.get("blocks.0.mlp.fc1.weight")
    shape = dict(embed_dim=D, in_chans=C, tubelet_size=ts, patch_size=p, depth=depth,
                 qkv_bias="blocks.0.attn.q_bias" in c, final_norm="norm.weight" in c,
                 mean_pooling="fc_norm.weight" in c)
    if fc1 is not None:
        shape["mlp_ratio"] = fc1.shape[0] / D
    if "head.weight" in c:
        shape["num_classes"] = int(c["head.weight"].shape[0])
    if src.kind == "pretrain":
        dec_depth = len({int(m[1]) for k in c if (m := re.match(r"decoder\.blocks\.(\d+)\.", k))})
        dd = (c["encoder_to_decoder.weight"].shape[0] if "encoder_to_decoder.weight" in c
              else c["mask_token"].shape[-1] if "mask_token" in c else None)
        shape.update(decoder_depth=dec_depth, decoder_embed_dim=int(dd) if dd is not None else None)
        dfc1 = c.get("decoder.blocks.0.mlp.fc1.weight")
        if dfc1 is not None and dd and fc1 is not None and dfc1.shape[0] * D != fc1.shape[0] * dd:
            raise ValueError("the decoder's MLP ratio differs from the encoder's; not supported")
    # shapes win over hints (a hint that disagrees with the weights is stale)
    values: dict[str, Any] = {**h, **shape}
    ov = {ALIASES.get(k, k): v for k, v in overrides.items()}
    values.update(ov)
    if "num_heads" not in values:
        values["num_heads"] = _heads_for(values["embed_dim"], "encoder")
    if src.kind == "pretrain" or "decoder_embed_dim" in ov:
        if values.get("decoder_num_heads") is None and values.get("decoder_embed_dim"):
            if spec_dec and spec_dec[0] == values["decoder_embed_dim"]:
                values["decoder_num_heads"] = spec_dec[1]
            else:
                values["decoder_num_heads"] = _heads_for(values["decoder_embed_dim"], "decoder",
                                                         values["embed_dim"])
    # frames / image size: overrides > hints > pos_embed > defaults
    pos = c.get("pos_embed")
    if "num_frames" not in values or "img_size" not in values:
        nf, img = values.get("num_frames"), values.get("img_size")
        if pos is not None:
            ts, p = values["tubelet_size"], values["patch_size"]
            try:  # the overrides may be what tells an ambiguous count apart ...
                nf, img = _solve_size(pos.shape[1], nf, img, ts, p)
            except ValueError:  # ... or ask for another size than the trained one
                nf0, img0 = _solve_size(pos.shape[1], h.get("num_frames"), h.get("img_size"), ts, p)
                nf, img = ov.get("num_frames", nf0), ov.get("img_size", img0)
            given = " and the overrides" if {"num_frames", "img_size"} & set(ov) else ""
            notes.append(f"num_frames={nf}, img_size={img} from pos_embed with "
                         f"{pos.shape[1]} positions{given}")
        else:
            missing = [k for k in ("num_frames", "img_size") if k not in values]
            nf, img = nf or 16, img or 224
            notes.append(f"{' and '.join(missing)} not stored in the checkpoint: using num_frames={nf}, "
                         f"img_size={img} (pass overrides if the model was trained otherwise)")
        values["num_frames"], values["img_size"] = nf, img
    arch = Arch.from_dict(values)
    # int(dim * ratio) must give back the stored hidden width
    if fc1 is not None and int(arch.embed_dim * arch.mlp_ratio) != fc1.shape[0] \
            and arch.embed_dim == D:
        arch.mlp_ratio = (fc1.shape[0] + 0.5) / arch.embed_dim
    return arch, notes


def _solve_size(n_pos: int, nf: int | None, img: int | None, ts: int, p: int) -> tuple[int, int]:
    def img_for(frames: int) -> int | None:
        if frames % ts or n_pos % (frames // ts):
            return None
        side = math.isqrt(n_pos // (frames // ts))
        return side * p if side * side * (frames // ts) == n_pos else None

    if nf is not None and img is None:
        img = img_for(nf)
    elif img is not None and nf is None:
        per = (img // p) ** 2
        nf = n_pos // per * ts if n_pos % per == 0 else None
    elif nf is None and img is None:
        nf = 16 if img_for(16) else None
        img = img_for(16) if nf else None
        if nf is None and n_pos % ((224 // p) ** 2) == 0:
            img, nf = 224, n_pos // ((224 // p) ** 2) * ts
    if nf is None or img is None:
        raise ValueError(f"cannot split {n_pos} positions into frames x size for patch {p}, "
                         f"tubelet {ts}; pass num_frames=... and img_size=...")
    return nf, img


# --------------------------------------------------------------------------- building
def _build(arch: Arch, task: str, build_kwargs: dict[str, Any]) -> nn.Module:
    common = dict(img_size=arch.img_size, patch_size=arch.patch_size, in_chans=arch.in_chans,
                  embed_dim=arch.embed_dim, depth=arch.depth, num_heads=arch.num_heads,
                  mlp_ratio=arch.mlp_ratio, num_frames=arch.num_frames,
                  tubelet_size=arch.tubelet_size, pos_embed=arch.pos_embed)
    if task == "pretrain":
        if not arch.qkv_bias:
            raise ValueError("pre-training models without q/v biases are not supported")
        model = PretrainVideoMAE(**common, decoder_embed_dim=arch.decoder_embed_dim,
                                 decoder_depth=arch.decoder_depth,
                                 decoder_num_heads=arch.decoder_num_heads,
                                 norm_pix_loss=arch.norm_pix_loss, **build_kwargs)
        if not arch.final_norm:
            model.encoder.norm = nn.Identity()
    else:
        num_classes = arch.num_classes if task == "classify" else 0
        model = VisionTransformer(**common, qkv_bias=arch.qkv_bias, num_classes=num_classes,
                                  use_mean_pooling=arch.mean_pooling, **build_kwargs)
        # match the tail to the checkpoint: norm / fc_norm may differ from the class defaults
        model.norm = nn.LayerNorm(arch.embed_dim) if arch.final_norm else nn.Identity()
        model.fc_norm = nn.LayerNorm(arch.embed_dim) if arch.mean_pooling else None
        model.use_mean_pooling = arch.mean_pooling
    for name, m in model.named_modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = (arch.fc_norm_eps if name.endswith("fc_norm") else
                     arch.decoder_norm_eps if name == "decoder.norm" else arch.norm_eps)
    return model


def arch_of(model: nn.Module) -> tuple[Arch, str]:
    """Architecture and kind (``pretrain`` / ``classify`` / ``encoder``) of a live model of ours."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, PretrainVideoMAE):
        enc, kind = model.encoder, "pretrain"
    elif isinstance(model, VisionTransformer):
        enc = model
        kind = "classify" if isinstance(model.head, nn.Linear) else "encoder"
    else:
        raise TypeError(f"expected a PretrainVideoMAE or VisionTransformer, got {type(model).__name__}")
    pe = enc.patch_embed
    blk = enc.blocks[0]
    a = Arch(embed_dim=enc.embed_dim, depth=len(enc.blocks), num_heads=blk.attn.num_heads,
             mlp_ratio=blk.mlp.fc1.out_features / enc.embed_dim, patch_size=pe.patch_size,
             tubelet_size=pe.tubelet_size, in_chans=pe.proj.in_channels, num_frames=pe.num_frames,
             img_size=pe.img_size, qkv_bias=blk.attn.q_bias is not None,
             final_norm=isinstance(enc.norm, nn.LayerNorm), mean_pooling=enc.fc_norm is not None,
             num_classes=enc.head.out_features if isinstance(enc.head, nn.Linear) else 0,
             norm_eps=blk.norm1.eps, pos_embed=enc.pos_embed_type)
    if enc.fc_norm is not None:
        a.fc_norm_eps = enc.fc_norm.eps
    if kind == "pretrain":
        a.mean_pooling, a.num_classes = False, 0
        a.decoder_embed_dim = model.encoder_to_decoder.out_features
        a.decoder_depth = len(model.decoder.blocks)
        a.decoder_num_heads = model.decoder.blocks[0].attn.num_heads if a.decoder_depth else 1
        a.decoder_norm_eps = model.decoder.norm.eps
        a.norm_pix_loss = model.norm_pix_loss
    if int(a.embed_dim * a.mlp_ratio) != blk.mlp.fc1.out_features:
        a.mlp_ratio = (blk.mlp.fc1.out_features + 0.5) / a.embed_dim
    return a, kind


# --------------------------------------------------------------------------- loading
def check_finite(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights holding NaN or inf: a diverged run's file gives no meaningful model."""
    bad = nonfinite_keys(state)
    if bad:
        raise ValueError(f"{path}: {len(bad)} of {len(state)} weight tensors hold NaN or inf values "
                         f"(first: {', '.join(bad[:3])}); the run that wrote it diverged. Use an "
                         f"earlier checkpoint of that run")


def _split_overrides(overrides: dict[str, Any], task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    arch_names = {f.name for f in dataclasses.fields(Arch)}
    arch_ov, build = {}, {}
    for k, v in overrides.items():
        name = ALIASES.get(k, k)
        if name in arch_names:
            arch_ov[name] = v
        elif k in BUILD_KWARGS[task]:
            build[k] = v
        else:
            valid = sorted((arch_names | set(BUILD_KWARGS[task]) | set(ALIASES)))
            raise TypeError(f"load_model() got an unknown override {k!r} for task={task!r}; "
                            f"valid: {', '.join(valid)}")
    return arch_ov, build


def resolve_checkpoint(source: str | Path) -> Path:
    """The local path of ``source``: a path as it is; ``hf-hub:ORG/NAME[/PATH][@REV]``, an
    ``http(s)://`` URL or a name of the weights table downloaded or found in the cache
    (:mod:`mgmae.weights`)."""
    from mgmae.weights import is_reference, resolve

    return resolve(source) if is_reference(source) else Path(source)


def load_model(path: str | Path, task: str | None = None, strict: bool = True,
               trusted: bool | None = None, **overrides: Any) -> nn.Module:
    """Load any supported VideoMAE-family checkpoint as a model of ours.

    Args:
        path: our ``.pth`` / ``.safetensors``, an official VideoMAE / VideoMAE V2 / MGMAE ``.pth``,
            or a Hugging Face VideoMAE directory; or where to get one: ``hf-hub:ORG/NAME[/PATH]
            [@REV]``, an ``http(s)://`` URL (``#sha256=HEX`` checked), a name of the weights table
            (``mgmae weights``); downloads are cached and read by the same safe loader.
        task: ``"pretrain"`` (:class:`PretrainVideoMAE`), ``"classify"`` (:class:`VisionTransformer`
            with a head), ``"encoder"`` (the backbone, ``head = Identity``); ``None``: what the
            checkpoint holds. A pre-training checkpoint loaded for ``"classify"`` gives the encoder
            weights with a freshly initialised ``fc_norm`` + ``head`` (``num_classes=`` required).
        strict: raise on missing, unexpected or mis-shaped tensors (the default); with ``False``
            they are initialised/ignored and reported.
        trusted: ``.pth`` files are read with ``weights_only=True`` and a small allowlist
            (:mod:`mgmae.serialization`); a file that pickles anything else is refused unless
            ``trusted=True`` (only for files you trust: unpickling can run code). ``None``: the
            ambient :func:`mgmae.serialization.trust_checkpoints` choice (off by default).
        **overrides: what shapes cannot tell or what to change: ``num_frames``, ``img_size``
            (the fixed sinusoidal position tables are rebuilt for them), ``num_heads``,
            ``decoder_num_heads``, ``num_classes``, ``use_mean_pooling``, ``norm_pix_loss``; and
            build options ``drop_path_rate``, ``drop_rate``, ``attn_drop_rate``, ``fc_drop_rate``,
            ``init_scale``, ``grad_checkpointing``.

    Returns:
        the model in eval mode on CPU, with ``model.load_report`` (:class:`LoadReport`).
    """
    given, path = path, resolve_checkpoint(path)
    src = _read(path, trusted)
    check_finite(src.canon, path)
    task = task or src.kind
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS} or None, got {task!r}")
    arch_ov, build_kwargs = _split_overrides(overrides, task)
    arch, notes = _infer_arch(src, arch_ov)
    if task == "classify" and src.kind != "classify":
        if "num_classes" not in arch_ov or not arch_ov["num_classes"]:
            raise ValueError(f"{path} is a {src.kind} checkpoint; loading it for task='classify' "
                             f"needs num_classes=N (the head is initialised from scratch)")
        if "mean_pooling" not in arch_ov:
            arch.mean_pooling = True  # the VideoMAE fine-tuning recipe
        arch.final_norm = not arch.mean_pooling
    if task == "classify" and arch.num_classes <= 0:
        raise ValueError(f"task='classify' needs num_classes > 0, got {arch.num_classes}")
    if task == "classify" and src.kind == "classify" and "mean_pooling" in arch_ov \
            and "final_norm" not in arch_ov:
        arch.final_norm = not arch.mean_pooling
    if task == "pretrain":
        arch.mean_pooling, arch.num_classes = False, 0
        if src.kind != "pretrain":
            spec = next((s for s in SIZES.values() if s.embed_dim == arch.embed_dim), None)
            arch.decoder_embed_dim = arch.decoder_embed_dim or (spec.decoder_embed_dim if spec else None)
            arch.decoder_num_heads = arch.decoder_num_heads or (spec.decoder_num_heads if spec else None)
            arch.decoder_depth = arch.decoder_depth or getattr(spec, "decoder_depth", 4)
            if not arch.final_norm and "final_norm" not in arch_ov:
                arch.final_norm = True  # the official encoder always has ``norm``
            if arch.decoder_embed_dim is None or arch.decoder_num_heads is None:
                raise ValueError(f"{path} has no decoder; pass decoder_embed_dim and decoder_num_heads")
    if task == "encoder":
        arch.num_classes = 0

    report = LoadReport(path=str(path), source=src.fmt, source_kind=src.kind, task=task,
                        arch=arch.to_dict(), notes=notes, config=src.config, info=dict(src.info))
    if str(given) != str(path):  # a hub id, URL or name: where its file is
        report.notes.append(f"{given} is {path}")
    model = _build(arch, task, build_kwargs)
    _assemble(model, task, src, arch, report, strict)
    model.eval()
    model.load_report = report
    logger.info("%s", report.summary())
    return model


def _assemble(model: nn.Module, task: str, src: _Source, arch: Arch, report: LoadReport,
              strict: bool) -> None:
    canon = dict(src.canon)
    report.unexpected += src.unknown
    # position embeddings: fixed sinusoids, rebuilt by the model for its size
    for key in [k for k in canon if k.endswith("pos_embed")]:
        t = canon.pop(key)
        dim = t.shape[-1]
        if t.ndim == 3 and torch.allclose(t.float(), sinusoid_table(t.shape[1], dim), atol=1e-4):
            report.notes.append(f"{key}: fixed sinusoid table, regenerated for "
                                f"num_frames={arch.num_frames}, img_size={arch.img_size}")
        else:
            report.unexpected.append(key)
            report.notes.append(f"{key} is not the fixed sinusoid table (learned position "
                                f"embeddings are not supported)")
    new_head = task == "classify" and (src.kind != "classify"
                                       or arch.num_classes != src.canon["head.weight"].shape[0])
    new_pool = task == "classify" and (src.kind != "classify"
                                       or arch.mean_pooling != ("fc_norm.weight" in src.canon))
    target = model.state_dict()
    new_sd = {}
    used: set[str] = set()
    for key, init in target.items():
        c = _to_canonical_ours(key, task)
        new_sd[key] = init
        if c.startswith("head.") and new_head:
            report.initialised.append(key)  # new task or new number of classes
        elif c in canon:
            used.add(c)
            if tuple(canon[c].shape) != tuple(init.shape):
                report.mismatched.append(f"{c}: checkpoint {tuple(canon[c].shape)} vs model "
                                         f"{tuple(init.shape)}")
                continue
            new_sd[key] = canon[c].to(init.dtype)
            report.loaded += 1
        elif c.startswith(("fc_norm.", "norm.")) and new_pool:
            report.initialised.append(key)  # pooling chosen for the new classifier
        else:
            report.missing.append(key)
    for c in canon:
        if c in used:
            continue
        target_key = _from_canonical_ours(c, task)
        if target_key not in target and _part(c) in ("decoder", "tail"):
            report.dropped.append(c)
        elif c.startswith("head.") and new_head:
            report.dropped.append(c)
        elif c.startswith(tuple(FOREIGN_HEADS)):
            report.dropped.append(c)
            what = FOREIGN_HEADS[next(p for p in FOREIGN_HEADS if c.startswith(p))]
            note = f"{what}: not part of the video encoder, dropped"
            if note not in report.notes:
                report.notes.append(note)
        else:
            report.unexpected.append(c)
    model.load_state_dict(new_sd, strict=True)
    problems = []
    if report.missing:
        hint = ""
        if task == "pretrain" and src.kind != "pretrain":
            hint = (f" The checkpoint is a {src.kind} checkpoint without a decoder: use "
                    f"task='classify' or 'encoder', or strict=False for a freshly initialised decoder.")
        hint = _decoder_hint(report, task) or hint
        problems.append(f"missing {len(report.missing)} tensors: {_short(report.missing)}.{hint}")
    if report.unexpected:
        problems.append(f"unexpected {len(report.unexpected)} tensors: {_short(report.unexpected)}"
                        + _family_hint(report.unexpected))
    if report.mismatched:
        problems.append(f"shape mismatch: {_short(report.mismatched, 4)}"
                        + ("." + _decoder_hint(report, task) if not report.missing
                           and _decoder_hint(report, task) else ""))
    if problems:
        msg = f"{report.path} ({report.source}, task={task}): " + "; ".join(problems)
        if strict:
            raise ValueError(msg + ". Pass strict=False (--non-strict) to load anyway; the "
                             "affected tensors are then initialised / ignored and reported.")
        logger.warning("%s (strict=False: initialised/ignored)", msg)


# --------------------------------------------------------------------------- writing
def registry_name(arch: Arch, kind: str) -> str | None:
    """The ``create_model`` name of ``arch``, or ``None`` when it is not a registered size."""
    for size, spec in SIZES.items():
        if (spec.embed_dim, spec.depth, spec.num_heads) == (arch.embed_dim, arch.depth, arch.num_heads) \
                and int(spec.embed_dim * spec.mlp_ratio) == int(arch.embed_dim * arch.mlp_ratio) \
                and arch.patch_size in spec.patch_sizes:
            name = f"vit_{size}_patch{arch.patch_size}"
            return "mae_" + name if kind == "pretrain" else name
    return None


def config_for(arch: Arch, kind: str, base: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Our ``Config`` dict for ``arch`` (the source's config updated), or ``None`` if the encoder is
    not a registered size."""
    from mgmae.config import Config

    name = registry_name(arch, kind)
    if name is None:
        return None
    try:
        cfg = Config.from_dict(base) if base else Config()
    except (KeyError, ValueError):  # a config of another version: keep what we know
        cfg = Config()
    cfg.model.name = name
    cfg.model.tubelet_size = arch.tubelet_size
    cfg.model.norm_pix_loss = arch.norm_pix_loss
    cfg.model.pos_embed = arch.pos_embed
    if kind == "pretrain":
        cfg.model.decoder_depth = arch.decoder_depth
        cfg.model.decoder_embed_dim = arch.decoder_embed_dim
        cfg.model.decoder_num_heads = arch.decoder_num_heads
    cfg.data.num_frames = arch.num_frames
    cfg.data.img_size = arch.img_size
    return cfg.to_dict()


def hf_config(arch: Arch, kind: str, class_names: list[str] | None = None) -> dict[str, Any]:
    """A transformers ``VideoMAEConfig`` (as a dict) for ``arch``; a classifier's ``id2label`` /
    ``label2id`` from ``class_names`` (``LABEL_i`` without them)."""
    archs = {"pretrain": "VideoMAEForPreTraining", "classify": "VideoMAEForVideoClassification",
             "encoder": "VideoMAEModel"}
    if kind == "pretrain":
        use_mean = not arch.final_norm
    elif kind == "classify":
        if arch.mean_pooling == arch.final_norm:
            raise ValueError("transformers VideoMAE needs either mean pooling + fc_norm without a "
                             "final norm, or a final norm with token-0 pooling")
        use_mean = arch.mean_pooling
    else:
        use_mean = not arch.final_norm
    cfg: dict[str, Any] = {
        "architectures": [archs[kind]], "model_type": "videomae",
        "image_size": arch.img_size, "patch_size": arch.patch_size, "num_channels": arch.in_chans,
        "num_frames": arch.num_frames, "tubelet_size": arch.tubelet_size,
        "hidden_size": arch.embed_dim, "num_hidden_layers": arch.depth,
        "num_attention_heads": arch.num_heads,
        "intermediate_size": int(arch.embed_dim * arch.mlp_ratio), "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02, "layer_norm_eps": arch.norm_eps,
        "qkv_bias": arch.qkv_bias, "qv_bias": arch.qkv_bias,  # transformers 4.x / 5.x names
        "use_mean_pooling": use_mean, "norm_pix_loss": arch.norm_pix_loss,
        # transformers hard-codes eps=1e-5 for these two norms; kept so that we read back ours
        "mgmae_fc_norm_eps": arch.fc_norm_eps, "mgmae_decoder_norm_eps": arch.decoder_norm_eps,
    }
    if kind == "pretrain":
        cfg.update(decoder_hidden_size=arch.decoder_embed_dim,
                   decoder_num_hidden_layers=arch.decoder_depth,
                   decoder_num_attention_heads=arch.decoder_num_heads,
                   decoder_intermediate_size=int(arch.decoder_embed_dim * arch.mlp_ratio))
    if kind == "classify":
        names = list(class_names or [])
        if len(names) != arch.num_classes or len(set(names)) != len(names):
            if names:
                logger.warning("%d class names for %d classes: id2label uses LABEL_i", len(names),
                               arch.num_classes)
            names = [f"LABEL_{i}" for i in range(arch.num_classes)]
        cfg["id2label"] = {str(i): n for i, n in enumerate(names)}
        cfg["label2id"] = {n: i for i, n in enumerate(names)}
    return cfg


def hf_processor_config(arch: Arch) -> dict[str, Any]:
    """The ``VideoMAEImageProcessor`` settings our models are evaluated with: the short side
    resized to the model's size (bilinear), a centre crop of that size, pixels / 255, ImageNet
    normalisation (``preprocessor_config.json`` of an exported directory)."""
    from mgmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    return {"image_processor_type": "VideoMAEImageProcessor", "processor_class": "VideoMAEImageProcessor",
            "do_resize": True, "size": {"shortest_edge": arch.img_size}, "resample": 2,
            "do_center_crop": True, "crop_size": {"height": arch.img_size, "width": arch.img_size},
            "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD)}


def model_card(arch: Arch, kind: str, config: dict[str, Any] | None, info: dict[str, Any]) -> str:
    """``README.md`` of an exported Hugging Face directory: what the model is, how it was trained
    (from our config, when the checkpoint carried one), its accuracy where the file knows it."""
    task = {"pretrain": "video masked autoencoder (pre-training model: encoder + decoder)",
            "classify": "video classifier", "encoder": "video encoder (features)"}[kind]
    hf_class = {"pretrain": "VideoMAEForPreTraining", "classify": "VideoMAEForVideoClassification",
                "encoder": "VideoMAEModel"}[kind]
    size = f"ViT, {arch.depth} blocks, width {arch.embed_dim}, {arch.num_heads} heads"
    lines = ["---", "library_name: transformers", "tags:", "- video", "- videomae", "- mgmae",
             f"pipeline_tag: {'video-classification' if kind == 'classify' else 'feature-extraction'}",
             "---", "", f"# {task.split(' (')[0].capitalize()}, exported by mgmae", "",
             f"A VideoMAE-architecture {task}, written by `mgmae convert ... --to hf`.", "",
             "| | |", "|---|---|",
             f"| architecture | {size}; patch {arch.patch_size}, tubelet {arch.tubelet_size} |",
             f"| input | {arch.num_frames} frames x {arch.img_size} x {arch.img_size}, RGB, ImageNet "
             "normalisation (`preprocessor_config.json`) |",
             f"| transformers class | `{hf_class}` |"]
    if kind == "classify":
        names = info.get("class_names") or []
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        lines.append(f"| classes | {arch.num_classes}{': ' + shown if names else ''} |")
    if config:
        m, d, f = config.get("masking", {}), config.get("data", {}), config.get("flow", {})
        if kind == "pretrain":  # (a fine-tuning config's masking keys are unused defaults)
            masking = m.get("name", "?")
            if masking == "motion_guided":
                masking += f" ({f.get('name', '?')} flow)"
            lines.append(f"| masking (pre-training) | {masking}, ratio {m.get('mask_ratio', '?')} |")
        source = d.get("train_list") or ("built-in synthetic videos" if d.get("dataset") in ("auto", "synthetic")
                                          else "?")
        lines.append(f"| training data | {source} |")
    if info.get("pretrained"):
        lines.append(f"| initialised from | {info['pretrained']} |")
    if info.get("best_acc1") is not None:
        epoch = f" (epoch {info['best_epoch']})" if info.get("best_epoch") is not None else ""
        lines.append(f"| best validation top-1 | {float(info['best_acc1']):.2f}%{epoch} |")
    lines += ["", "```python", "from transformers import pipeline", "",
              f"clf = pipeline(\"{'video-classification' if kind == 'classify' else 'feature-extraction'}\", "
              "model=\"path/to/this/directory\")", "```", "",
              "Loads back into mgmae with `mgmae.load_model(\"path/to/this/directory\")`.", ""]
    return "\n".join(lines)


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in sd.items()}


def export_model(model: nn.Module, dst: str | Path, to: str = "mgmae",
                 config: dict[str, Any] | None = None, info: dict[str, Any] | None = None) -> Path:
    """Write a live model of ours as ``to="mgmae"`` (``.safetensors`` with metadata, any other
    suffix: our ``.pth`` checkpoint), ``"hf"`` (transformers directory: ``config.json``,
    ``model.safetensors``, ``preprocessor_config.json`` and a ``README.md`` model card, so
    ``transformers.pipeline(..., model=DIR)`` works as it is) or ``"official"`` (``.pth`` with the
    state dict under ``model``). ``info``: what :attr:`LoadReport.info` holds (class names for
    ``id2label``, accuracy for the card); defaults to ``model.load_report.info``."""
    if info is None:
        info = getattr(getattr(model, "load_report", None), "info", None) or {}
    if to not in TARGETS:
        raise ValueError(f"to must be one of {TARGETS}, got {to!r}")
    arch, kind = arch_of(model)
    if to != "mgmae" and arch.pos_embed != "sincos_1d":
        raise ValueError(f"the model uses {arch.pos_embed} positions; the {to} format knows only "
                         f"VideoMAE's sincos_1d table and would rebuild it with the wrong positions: "
                         f"export it as mgmae (.pth or .safetensors) instead")
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    sd = model.state_dict()
    dst = Path(dst)
    if to == "mgmae":
        cfg = config_for(arch, kind, config)
        if dst.suffix == ".safetensors":
            from safetensors.torch import save_file

            meta = {"format": FORMAT, "kind": kind, "arch": json.dumps(arch.to_dict())}
            if cfg is not None:
                meta["config"] = json.dumps(cfg)
            dst.parent.mkdir(parents=True, exist_ok=True)
            save_file(_contiguous(sd), str(dst), metadata=meta)
            return dst
        if cfg is None:
            raise ValueError(f"a {arch.embed_dim}-wide, {arch.depth}-deep encoder is not a registered "
                             f"size, so it has no config of ours; write a .safetensors file instead")
        from mgmae.engine.checkpoint import save_checkpoint

        return save_checkpoint(dst, model=model, config=cfg, kind=kind,
                               extra={"arch": arch.to_dict()})
    if to == "official":
        from mgmae.engine.checkpoint import atomic_save

        if kind == "pretrain" and not arch.final_norm:
            logger.warning("the encoder has no final norm; official VideoMAE code expects "
                           "encoder.norm.* and will report it missing")
        return atomic_save({"model": _contiguous(sd), "mgmae_arch": arch.to_dict()}, dst)
    # Hugging Face directory
    canon = {_to_canonical_ours(k, kind): v for k, v in sd.items()}
    if kind == "encoder" and arch.mean_pooling:
        logger.warning("VideoMAEModel has no fc_norm; fc_norm.* is not exported")
    hf_sd = _canonical_to_hf(canon, kind)
    cfg = hf_config(arch, kind, info.get("class_names"))
    from safetensors.torch import save_file

    dst.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(hf_sd), str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (dst / "preprocessor_config.json").write_text(json.dumps(hf_processor_config(arch), indent=2) + "\n")
    (dst / "README.md").write_text(model_card(arch, kind, config, info))
    return dst


def convert(src: str | Path, dst: str | Path, to: str = "mgmae", task: str | None = None,
            strict: bool = True, trusted: bool | None = None, **overrides: Any) -> Path:
    """Load ``src`` (any supported format, see :func:`load_model`) and write it to ``dst`` in the
    ``to`` format; returns ``dst``."""
    return _convert(src, dst, to, task, strict, trusted=trusted, **overrides)[0]


def _convert(src, dst, to, task, strict, trusted=None, **overrides) -> tuple[Path, LoadReport]:
    if to not in TARGETS:
        raise ValueError(f"to must be one of {TARGETS}, got {to!r}")
    model = load_model(src, task=task, strict=strict, trusted=trusted, **overrides)
    report = model.load_report
    return export_model(model, dst, to=to, config=report.config, info=report.info), report


# --------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgmae convert",
        description="Convert VideoMAE/MGMAE checkpoints between our format, the official layout "
                    "and Hugging Face transformers directories.")
    p.add_argument("src", help="our .pth/.safetensors, an official .pth, or a HF VideoMAE directory; "
                               "or hf-hub:ORG/NAME[/PATH][@REV], an http(s) URL, a name of "
                               "`mgmae weights`")
    p.add_argument("dst", help="output: .safetensors / .pth (--to mgmae), a directory (--to hf), "
                               "a .pth (--to official)")
    p.add_argument("--to", choices=TARGETS, default="mgmae")
    p.add_argument("--task", choices=TASKS, default=None,
                   help="what to build (default: what the checkpoint holds)")
    p.add_argument("--num-classes", type=int, help="classifier width (new head if it changes)")
    p.add_argument("--num-frames", type=int, help="frames per clip (not stored in official files)")
    p.add_argument("--img-size", type=int, help="input resolution (not stored in official files)")
    p.add_argument("--num-heads", type=int, help="encoder heads, for non-standard widths")
    p.add_argument("--decoder-num-heads", type=int, help="decoder heads, for non-standard widths")
    p.add_argument("--non-strict", action="store_true",
                   help="initialise/ignore missing or unexpected tensors instead of failing")
    p.add_argument("--quiet", action="store_true", help="only the line naming what was written")
    add_common_flags(p)
    return p


@command("convert")
def cli_main(argv: list[str]) -> int:
    if argv and argv[0] == "convert":
        argv = argv[1:]
    args = build_parser().parse_intermixed_args(argv)
    overrides = {k: getattr(args, k) for k in ("num_classes", "num_frames", "img_size",
                                               "num_heads", "decoder_num_heads")
                 if getattr(args, k) is not None}
    check_output(args.dst, "the output", directory=args.to == "hf")
    out, report = _convert(args.src, args.dst, args.to, args.task, not args.non_strict, **overrides)
    if not args.quiet:
        print(report.summary())
    print(f"wrote {out} ({args.to})")
    return 0


__all__ = ["Arch", "LoadReport", "arch_of", "cli_main", "config_for", "convert", "export_model",
           "hf_config", "hf_processor_config", "load_model", "model_card", "registry_name"]
