"""RAFT flow backend: ``torchvision.models.optical_flow.raft_small`` / ``raft_large`` with weights
read from a LOCAL file (mgmae never downloads anything).

Accepted weight files (the layout is recognised by the keys, the file name does not matter):

* torchvision's own state dicts, e.g. ``raft_small_C_T_V2-01064c6d.pth`` /
  ``raft_large_C_T_SKHT_V2-ff5fadd5.pth`` (from ``https://download.pytorch.org/models/``);
* the original princeton-vl/RAFT repository's files ``raft-small.pth`` (small) and
  ``raft-things.pth`` / ``raft-sintel.pth`` / ``raft-kitti.pth`` / ``raft-chairs.pth`` (large),
  and re-trained files in that layout (e.g. MGMAE's ``raft-small-clean.pth``): modules named
  ``fnet`` / ``cnet`` / ``update_block``, keys optionally prefixed ``module.`` (``nn.DataParallel``).
  They are converted on load by :func:`original_to_torchvision`.

Both may also be wrapped as ``{"state_dict": ...}`` / ``{"model": ...}``.

About the key map: torchvision's module names were read from its source
(``torchvision/models/optical_flow/raft.py``, 0.29); the original repository's names and shapes from
the original RAFT code as vendored by the official MGMAE repository (``flow_utils/raft/core/
extractor.py``, ``update.py``, ``raft.py``):

* ``fnet`` / ``cnet``: ``BasicEncoder`` (large: 64-64-96-128 channels, ``ResidualBlock`` with
  ``conv1``/``conv2``, ``norm1``/``norm2``, and for the stride-2 blocks ``norm3`` that is *also*
  registered as ``downsample.1``) or ``SmallEncoder`` (small: 32-32-64-96, ``BottleneckBlock``
  with ``conv1..3``, ``norm1..3`` and the aliased ``norm4``); stem ``conv1``/``norm1``, head ``conv2``.
  ``fnet`` uses ``InstanceNorm2d`` (no affine, no running stats: no keys), the large ``cnet``
  ``BatchNorm2d`` (weight, bias, running mean/var, num_batches_tracked), the small ``cnet`` no norm.
* ``update_block``: ``encoder`` (``BasicMotionEncoder``: ``convc1``, ``convc2``, ``convf1``,
  ``convf2``, ``conv``; ``SmallMotionEncoder``: the same without ``convc2``), ``gru``
  (``SepConvGRU``: ``convz1``/``convr1``/``convq1`` (1x5) and ``...2`` (5x1); ``ConvGRU``: ``convz``,
  ``convr``, ``convq`` (3x3)), ``flow_head`` (``conv1``, ``conv2``) and, large only, ``mask``
  (``Sequential(conv 3x3, ReLU, conv 1x1)``: indices 0 and 2).

Verified (tests/test_flow.py): the full original key/shape lists, enumerated from that source
(106 keys for RAFT-small, 179 for RAFT-large including the 10 aliased downsample-norm entries),
convert to exactly torchvision's state dicts (106 / 169 keys, equal shapes) and back. Files saved
from ``nn.DataParallel`` (``module.`` prefix, the published ``models.zip``) and bare ones (the
MGMAE default ``raft-small-clean.pth``, loaded by the official code with a plain
``load_state_dict``) are both accepted. Not verified: loading a real published file (none can be
downloaded here). Loading is strict, so a wrong name fails loudly (listing missing/unexpected
keys), never silently; the only thing filled in is a missing BatchNorm ``num_batches_tracked``
(files saved by PyTorch < 0.4.1 lack it; it does not affect inference).
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RAFTFlow", "load_raft_state_dict", "original_to_torchvision", "torchvision_to_original",
           "default_weight_dirs", "KNOWN_WEIGHT_FILES", "AMP_CHOICES", "DEFAULT_ITERS"]

DEFAULT_ITERS = {"raft_small": 6, "raft_large": 12}
_MIN_SIDE = 128  # torchvision RAFT refuses feature maps < 16 (images < 128 px): pad up to it

# File names looked for (in this order) in the default directories when no path is given.
KNOWN_WEIGHT_FILES = {
    "raft_small": ("raft_small.pth", "raft_small_C_T_V2-01064c6d.pth", "raft_small_C_T_V1-ad48884c.pth",
                   "raft-small.pth", "raft-small-clean.pth"),
    "raft_large": ("raft_large.pth", "raft_large_C_T_SKHT_V2-ff5fadd5.pth", "raft_large_C_T_V2-1bb1363a.pth",
                   "raft_large_C_T_SKHT_V1-0b8c9e55.pth", "raft_large_C_T_V1-22a6c225.pth", "raft-things.pth",
                   "raft-sintel.pth"),
}


def default_weight_dirs() -> list[Path]:
    """Where weights are looked for when no path is given: ``$MGMAE_WEIGHTS_DIR`` (default
    ``~/.cache/mgmae/weights``), then torch hub's checkpoint cache (where torchvision keeps files it
    downloaded earlier, e.g. ``~/.cache/torch/hub/checkpoints``)."""
    dirs = [Path(os.environ.get("MGMAE_WEIGHTS_DIR", "~/.cache/mgmae/weights")).expanduser()]
    try:
        dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    except Exception:  # pragma: no cover - hub dir unavailable
        pass
    return dirs


def _env_var(model: str) -> str:
    return f"MGMAE_{model.upper()}_WEIGHTS"


def _expected_files_text(model: str) -> str:
    if model == "raft_small":
        return ("torchvision's 'raft_small_C_T_V2-01064c6d.pth' (or 'raft_small_C_T_V1-ad48884c.pth') from "
                "https://download.pytorch.org/models/, or the original princeton-vl/RAFT 'raft-small.pth' "
                "(from the RAFT repository's models.zip)")
    return ("torchvision's 'raft_large_C_T_SKHT_V2-ff5fadd5.pth' (or 'raft_large_C_T_V2-1bb1363a.pth') from "
            "https://download.pytorch.org/models/, or the original princeton-vl/RAFT 'raft-things.pth' "
            "(from the RAFT repository's models.zip)")


def resolve_weights(model: str, weights: str | os.PathLike | None) -> Path:
    """The weight file to use: ``weights`` if given, else ``$MGMAE_<MODEL>_WEIGHTS``, else the first
    known file name found in :func:`default_weight_dirs`. Raises a FileNotFoundError that says
    where to put which file."""
    env = _env_var(model)
    if weights is None and os.environ.get(env):
        weights = os.environ[env]
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        raise FileNotFoundError(
            f"RAFT weights for {model!r} not found: {str(path)!r} does not exist (or is not a file). "
            f"mgmae never downloads weights; put the file there or pass another path "
            f"(build_flow({model!r}, weights=PATH) or ${env}). Expected: {_expected_files_text(model)}."
        )
    dirs = default_weight_dirs()
    for d in dirs:
        for name in KNOWN_WEIGHT_FILES[model]:
            if (d / name).is_file():
                return d / name
    raise FileNotFoundError(
        f"no RAFT weights for {model!r}: pass build_flow({model!r}, weights=PATH), set ${env}, or put one "
        f"of {', '.join(repr(n) for n in KNOWN_WEIGHT_FILES[model])} in {dirs[0]} "
        f"(looked in: {', '.join(str(d) for d in dirs)}). mgmae never downloads weights. "
        f"Expected: {_expected_files_text(model)}."
    )


# --------------------------------------------------------------------------- key maps

_ENC = {"fnet": "feature_encoder", "cnet": "context_encoder"}
_ENC_INV = {v: k for k, v in _ENC.items()}
_MOTION = {"convc1": "convcorr1.0", "convc2": "convcorr2.0", "convf1": "convflow1.0",
           "convf2": "convflow2.0", "conv": "conv.0"}
_MOTION_INV = {v: k for k, v in _MOTION.items()}


def _unwrap(sd) -> dict[str, Tensor]:
    """Accept bare state dicts and ``{"state_dict"|"model"|"model_state_dict": ...}``; strip ``module.``."""
    if isinstance(sd, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in sd and isinstance(sd[key], Mapping):
                sd = sd[key]
                break
    if not isinstance(sd, Mapping):
        raise ValueError(f"expected a state dict (a mapping of names to tensors), got {type(sd).__name__}")
    out = {}
    for k, v in sd.items():
        if not isinstance(k, str):
            raise ValueError(f"not a state dict: key {k!r} is not a string")
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out


def _layout(sd: Mapping[str, Tensor]) -> str:
    keys = list(sd)
    if any(k.startswith(("fnet.", "cnet.")) for k in keys):
        return "original"
    if any(k.startswith(("feature_encoder.", "context_encoder.")) for k in keys):
        return "torchvision"
    return "unknown"


def original_to_torchvision(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Convert a princeton-vl/RAFT state dict (``module.`` prefix optional) to torchvision's names.

    The original residual / bottleneck blocks register their downsample norm twice (as ``normK``
    and as ``downsample.1``); the duplicate is dropped (after checking both hold the same tensor).
    Raises ValueError on a key it does not know.
    """
    sd = _unwrap(sd)
    # Block type per encoder block: bottleneck blocks (SmallEncoder) have conv3.
    n_convs = {}
    for k in sd:
        m = re.match(r"^([fc]net\.layer\d\.\d+)\.conv(\d)\.", k)
        if m:
            n_convs[m.group(1)] = max(n_convs.get(m.group(1), 0), int(m.group(2)))

    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        new = None
        m = re.match(r"^([fc]net)\.(.*)$", k)
        if m:
            enc, rest = _ENC[m.group(1)], m.group(2)
            if mm := re.match(r"^conv1\.(\w+)$", rest):
                new = f"{enc}.convnormrelu.0.{mm.group(1)}"
            elif mm := re.match(r"^norm1\.(\w+)$", rest):
                new = f"{enc}.convnormrelu.1.{mm.group(1)}"
            elif mm := re.match(r"^conv2\.(\w+)$", rest):
                new = f"{enc}.conv.{mm.group(1)}"
            elif mm := re.match(r"^(layer\d\.\d+)\.(conv|norm)(\d)\.(\w+)$", rest):
                block, kind, idx, p = mm.group(1), mm.group(2), int(mm.group(3)), mm.group(4)
                nconv = n_convs.get(f"{m.group(1)}.{block}", 0)
                if kind == "conv":
                    new = f"{enc}.{block}.convnormrelu{idx}.0.{p}"
                elif idx <= nconv:
                    new = f"{enc}.{block}.convnormrelu{idx}.1.{p}"
                elif idx == nconv + 1:  # the downsample's norm, also stored as downsample.1
                    dup = f"{m.group(1)}.{block}.downsample.1.{p}"
                    if dup in sd:
                        if not _same(sd[dup], v):
                            raise ValueError(f"{k} and its alias {dup} hold different tensors")
                        continue
                    new = f"{enc}.{block}.downsample.1.{p}"
            elif mm := re.match(r"^(layer\d\.\d+)\.downsample\.([01])\.(\w+)$", rest):
                new = f"{enc}.{mm.group(1)}.downsample.{mm.group(2)}.{mm.group(3)}"
        elif (m := re.match(r"^update_block\.encoder\.(\w+)\.(\w+)$", k)) and m.group(1) in _MOTION:
            new = f"update_block.motion_encoder.{_MOTION[m.group(1)]}.{m.group(2)}"
        elif m := re.match(r"^update_block\.gru\.conv([zrq])([12]?)\.(\w+)$", k):
            new = f"update_block.recurrent_block.convgru{m.group(2) or '1'}.conv{m.group(1)}.{m.group(3)}"
        elif m := re.match(r"^update_block\.flow_head\.(conv[12]\.\w+)$", k):
            new = f"update_block.flow_head.{m.group(1)}"
        elif m := re.match(r"^update_block\.mask\.([02])\.(\w+)$", k):
            new = f"mask_predictor.{'convrelu.0' if m.group(1) == '0' else 'conv'}.{m.group(2)}"
        if new is None:
            raise ValueError(f"unknown key {k!r} in an original-RAFT-layout state dict")
        out[new] = v
    return out


def _same(a, b) -> bool:
    return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and torch.equal(a, b)


def torchvision_to_original(sd: Mapping[str, Tensor], prefix: str = "module.") -> dict[str, Tensor]:
    """Inverse of :func:`original_to_torchvision`: torchvision RAFT names -> princeton-vl/RAFT names
    (with the ``module.`` prefix of the published files, and the downsample norm stored under both
    of its names, as ``nn.Module.state_dict`` of the original model does). Used by the tests and to
    export weights to code written against the original repository."""
    sd = _unwrap(sd)
    n_convs = {}
    for k in sd:
        m = re.match(r"^(\w+_encoder\.layer\d\.\d+)\.convnormrelu(\d)\.", k)
        if m:
            n_convs[m.group(1)] = max(n_convs.get(m.group(1), 0), int(m.group(2)))
    sep_gru = any(".convgru2." in k for k in sd)

    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        new = None
        if m := re.match(r"^(feature_encoder|context_encoder)\.(.*)$", k):
            enc, rest = _ENC_INV[m.group(1)], m.group(2)
            if mm := re.match(r"^convnormrelu\.([01])\.(\w+)$", rest):
                new = [f"{enc}.{'conv1' if mm.group(1) == '0' else 'norm1'}.{mm.group(2)}"]
            elif mm := re.match(r"^conv\.(\w+)$", rest):
                new = [f"{enc}.conv2.{mm.group(1)}"]
            elif mm := re.match(r"^(layer\d\.\d+)\.convnormrelu(\d)\.([01])\.(\w+)$", rest):
                kind = "conv" if mm.group(3) == "0" else "norm"
                new = [f"{enc}.{mm.group(1)}.{kind}{mm.group(2)}.{mm.group(4)}"]
            elif mm := re.match(r"^(layer\d\.\d+)\.downsample\.([01])\.(\w+)$", rest):
                new = [f"{enc}.{mm.group(1)}.downsample.{mm.group(2)}.{mm.group(3)}"]
                if mm.group(2) == "1":
                    nconv = n_convs[f"{m.group(1)}.{mm.group(1)}"]
                    new.append(f"{enc}.{mm.group(1)}.norm{nconv + 1}.{mm.group(3)}")
        elif (m := re.match(r"^update_block\.motion_encoder\.(\w+\.0)\.(\w+)$", k)) and m.group(1) in _MOTION_INV:
            new = [f"update_block.encoder.{_MOTION_INV[m.group(1)]}.{m.group(2)}"]
        elif m := re.match(r"^update_block\.recurrent_block\.convgru([12])\.conv([zrq])\.(\w+)$", k):
            suffix = m.group(1) if sep_gru else ""
            new = [f"update_block.gru.conv{m.group(2)}{suffix}.{m.group(3)}"]
        elif m := re.match(r"^update_block\.flow_head\.(conv[12]\.\w+)$", k):
            new = [f"update_block.flow_head.{m.group(1)}"]
        elif m := re.match(r"^mask_predictor\.(convrelu\.0|conv)\.(\w+)$", k):
            new = [f"update_block.mask.{'0' if m.group(1) == 'convrelu.0' else '2'}.{m.group(2)}"]
        if new is None:
            raise ValueError(f"unknown key {k!r} in a torchvision-layout RAFT state dict")
        for n in new:
            out[prefix + n] = v
    return out


def _guess_model(sd: Mapping[str, Tensor]) -> str | None:
    """raft_small / raft_large / None from a torchvision-layout state dict."""
    w = sd.get("feature_encoder.conv.weight")
    if isinstance(w, Tensor) and w.dim() == 4:
        return {128: "raft_small", 256: "raft_large"}.get(w.shape[0])
    if any(k.startswith("mask_predictor.") for k in sd):
        return "raft_large"
    return None


def load_raft_state_dict(model: torch.nn.Module, name: str, path: str | os.PathLike) -> None:
    """Load a torchvision- or original-layout RAFT file into ``model`` (a torchvision ``name`` model)."""
    path = Path(path)
    from mgmae.serialization import torch_load

    try:
        raw = torch_load(path)
    except (ValueError, OSError) as e:
        raise ValueError(f"could not read RAFT weights {str(path)!r}: {e}") from None
    try:
        sd = _unwrap(raw)
    except ValueError as e:
        raise ValueError(f"{str(path)!r} is not a RAFT state dict: {e}") from None
    layout = _layout(sd)
    if layout == "unknown":
        first = ", ".join(list(sd)[:5]) or "(empty)"
        raise ValueError(
            f"{str(path)!r} is not a RAFT state dict: expected keys starting with 'feature_encoder.' / "
            f"'context_encoder.' (torchvision layout) or 'fnet.' / 'cnet.' / 'update_block.' (princeton-vl/RAFT "
            f"layout, optionally prefixed 'module.'); first keys: {first}. Expected: {_expected_files_text(name)}."
        )
    if layout == "original":
        try:
            sd = original_to_torchvision(sd)
        except ValueError as e:
            raise ValueError(f"{str(path)!r} looks like an original RAFT file but could not be converted: {e}") from None
    guess = _guess_model(sd)
    if guess is not None and guess != name:
        raise ValueError(
            f"{str(path)!r} holds {guess} weights ({layout} layout), but {name} was requested; "
            f"use build_flow({guess!r}, weights=...) or give a {name} file. Expected: {_expected_files_text(name)}."
        )
    own = model.state_dict()
    for k in set(own) - set(sd):  # pre-0.4.1 files lack BatchNorm's counter; harmless at inference
        if k.endswith(".num_batches_tracked"):
            sd[k] = torch.zeros_like(own[k])
    bad = [k for k, v in sd.items() if k in own and (not isinstance(v, Tensor) or v.shape != own[k].shape)]
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    if bad or missing or unexpected:
        def _few(xs):
            return ", ".join(xs[:6]) + (f" ... ({len(xs)} in all)" if len(xs) > 6 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_few(unexpected)}")
        if bad:
            parts.append("shape mismatch: " + _few([f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
                                                    for k in bad]))
        raise ValueError(f"{str(path)!r} ({layout} layout) does not fit {name}: " + "; ".join(parts)
                         + f". Expected: {_expected_files_text(name)}.")
    model.load_state_dict(sd, strict=True)


# --------------------------------------------------------------------------- estimator

AMP_CHOICES = ("auto", "bf16", "fp16", "none")


class RAFTFlow:
    """Batched RAFT flow on whatever device the inputs are on (``torch.no_grad``).

    Args:
        model: ``"raft_small"`` (the paper's setting) or ``"raft_large"``.
        weights: path to a local weight file (see the module docstring), or ``"random"``: random
            weights (smoke tests and timing only: the flow is meaningless; warns loudly). Default:
            ``$MGMAE_RAFT_SMALL_WEIGHTS`` / ``$MGMAE_RAFT_LARGE_WEIGHTS``, else a known file name in
            :func:`default_weight_dirs`.
        iters: refinement iterations; None: the model's standard, 6 for small (the MGMAE paper's
            setting), 12 for large (RAFT's).
        random_init: the same as ``weights="random"``.
        batch_size: run at most this many pairs at once (None: all at once).
        amp: autocast while RAFT runs: ``auto`` (bf16 on CUDA devices that support it, none
            elsewhere) | ``bf16`` | ``fp16`` | ``none`` (float32). The flow is returned as float32.

    Called with float32 ``(N, 3, H, W)`` RGB in ``[0, 1]`` (the :class:`mgmae.flow.FlowEstimator`
    wrapper converts uint8). Inputs are padded (replicate, centred) to a multiple of 8 and to at least
    128 px per side (torchvision's 4-level correlation pyramid needs feature maps of at least 16, i.e.
    images of at least 128) and the flow is cropped back.
    """

    def __init__(self, model: str = "raft_small", weights: str | os.PathLike | None = None,
                 iters: int | None = None, random_init: bool = False, batch_size: int | None = None,
                 amp: str = "none"):
        import warnings

        from torchvision.models import optical_flow

        if model not in DEFAULT_ITERS:
            raise ValueError(f"RAFT model must be 'raft_small' or 'raft_large', got {model!r}")
        self.name = model
        if iters is not None and (isinstance(iters, bool) or not isinstance(iters, numbers.Integral) or iters < 1):
            raise ValueError(f"flow.iters (RAFT refinement iterations) must be an integer >= 1 or null "
                             f"(the model's standard: 6 for raft_small, 12 for raft_large), got {iters!r}")
        self.iters = int(iters) if iters is not None else DEFAULT_ITERS[model]
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral)
                                       or batch_size < 1):
            raise ValueError(f"flow.batch_size (RAFT frame pairs per call) must be an integer >= 1, "
                             f"got {batch_size!r}")
        self.batch_size = None if batch_size is None else int(batch_size)
        if amp not in AMP_CHOICES:
            raise ValueError(f"flow.amp = {amp!r}; allowed: {', '.join(AMP_CHOICES)}")
        self.amp = amp
        if isinstance(weights, str) and weights == "random":
            weights, random_init = None, True
        self.weights_path = None
        if not random_init:
            self.weights_path = resolve_weights(model, weights)  # fail before building the net
        elif weights is not None:
            raise ValueError("give either weights=PATH or random_init=True (weights='random'), not both")
        else:
            warnings.warn(f"RAFT ({model}) with RANDOM WEIGHTS (flow.weights=random): the flow and the "
                          f"motion-guided masks are meaningless; use it for smoke tests and timing only",
                          UserWarning, stacklevel=2)
        self.model = getattr(optical_flow, model)(weights=None, progress=False)
        if self.weights_path is not None:
            try:
                load_raft_state_dict(self.model, model, self.weights_path)
            except ValueError as e:  # name the config key: the file came from flow.weights
                raise ValueError(f"flow.weights: {e}") from None
        self.model.eval().requires_grad_(False)
        self._bf16_ok: dict[str, bool] = {}

    def amp_dtype(self, device: torch.device) -> torch.dtype | None:
        """The autocast dtype RAFT runs under on ``device`` (None: float32)."""
        if self.amp == "none":
            return None
        if self.amp == "bf16":
            return torch.bfloat16
        if self.amp == "fp16":
            return torch.float16
        if device.type != "cuda":  # auto: bf16 on CUDA devices that support it
            return None
        key = str(device)
        if key not in self._bf16_ok:
            with torch.cuda.device(device):
                self._bf16_ok[key] = torch.cuda.is_bf16_supported()
        return torch.bfloat16 if self._bf16_ok[key] else None

    def __call__(self, src: Tensor, dst: Tensor) -> Tensor:
        device = src.device
        p = next(self.model.parameters())
        if p.device != device:
            self.model.to(device)
        n = src.shape[0]
        step = self.batch_size or n
        dtype = self.amp_dtype(device)
        # torch.device(device): factory calls inside torchvision's RAFT without a device (the
        # correlation lookup's offsets, torch.linspace, once per iteration) are made on the device
        # instead of on the CPU and copied with a blocking, host-synchronising copy
        with torch.no_grad(), torch.device(device), \
                torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
            outs = [self._run(src[i:i + step], dst[i:i + step]) for i in range(0, n, step)]
        return torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]

    def _run(self, src: Tensor, dst: Tensor) -> Tensor:
        if src.shape[1] == 1:
            src, dst = src.expand(-1, 3, -1, -1), dst.expand(-1, 3, -1, -1)
        h, w = src.shape[-2:]
        ph = max(_MIN_SIDE, (h + 7) // 8 * 8) - h
        pw = max(_MIN_SIDE, (w + 7) // 8 * 8) - w
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # left, right, top, bottom
        x = torch.cat([src, dst], dim=0).float() * 2.0 - 1.0  # RAFT expects [-1, 1]
        if ph or pw:
            x = F.pad(x, pad, mode="replicate")
        a, b = x.chunk(2, dim=0)
        flow = self.model(a.contiguous(), b.contiguous(), num_flow_updates=self.iters)[-1]
        return flow[:, :, pad[2]:pad[2] + h, pad[0]:pad[0] + w].float()

    def __repr__(self) -> str:
        src = "RANDOM WEIGHTS" if self.weights_path is None else str(self.weights_path)
        return (f"RAFTFlow({self.name!r}, iters={self.iters}, weights={src!r}, batch_size={self.batch_size}, "
                f"amp={self.amp!r})")
