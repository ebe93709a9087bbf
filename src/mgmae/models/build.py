"""One place that builds an encoder or a classifier for a run, from a checkpoint or from scratch.

Like timm's ``create_model(name, pretrained=..., checkpoint_path=...)``: the architecture comes
from the config (``model.*``, ``data.num_frames``, ``data.img_size``) or from the checkpoint, the
weights from the checkpoint (any file :func:`mgmae.convert.load_model` reads: ours, official
VideoMAE / MGMAE, Hugging Face) or from random initialisation (``source="scratch"``)::

    encoder = build_encoder("runs/demo/checkpoint-final.pth", cfg)   # head = Identity
    model = build_classifier("scratch", cfg, num_classes=8)         # new model, new head
    model = build_classifier("ft/checkpoint-best.pth", cfg)         # the checkpoint's own head

``init_pretrain_model(model, path, cfg)`` copies a checkpoint's encoder (and decoder, where the
file has one) into a pre-training model built from the config: ``train.init_from``.

The returned model carries ``model.load_report`` (:class:`mgmae.convert.LoadReport`: what was
loaded, initialised, ignored; ``None`` from scratch). The checkpoint filter (key mapping, position
tables rebuilt for the clip size, a new head when the class count differs) lives in
:mod:`mgmae.convert`; this module only decides what to ask it for.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from mgmae.convert import _collapse, _from_canonical_ours, _to_canonical_ours, arch_of, load_model, \
    registry_name
from mgmae.models import create_model
from mgmae.serialization import UntrustedCheckpointError

__all__ = ["SCRATCH", "build_classifier", "build_encoder", "classifier_name", "init_pretrain_model",
           "is_scratch", "sync_model_config"]

SCRATCH = "scratch"


def is_scratch(source) -> bool:
    """``"scratch"`` or None: a randomly initialised model."""
    return source is None or str(source) == SCRATCH


def classifier_name(cfg) -> str:
    """The registry name of the encoder/classifier a config describes (``finetune.model``, else
    ``model.name`` without ``mae_``)."""
    return cfg.finetune.model or cfg.model.name.removeprefix("mae_")


def sync_model_config(cfg, model: nn.Module) -> None:
    """Make ``cfg.model`` describe ``model`` (so the saved config rebuilds it, and a model from
    scratch built with ``cfg`` has the same architecture)."""
    arch, _ = arch_of(model)
    name = registry_name(arch, "pretrain")
    if name is not None:
        cfg.model.name = name
    cfg.model.tubelet_size = arch.tubelet_size
    cfg.model.pos_embed = arch.pos_embed


def _scratch(cfg, num_classes: int, **build) -> nn.Module:
    d = cfg.data
    model = create_model(classifier_name(cfg), num_classes=num_classes, num_frames=d.num_frames,
                         img_size=d.img_size, tubelet_size=cfg.model.tubelet_size,
                         pos_embed=cfg.model.pos_embed, **build)
    model.load_report = None
    return model


def _checkpoint(source) -> Path:
    from mgmae.weights import is_reference, resolve

    if is_reference(source):  # hf-hub:, a URL, a name of the weights table
        return resolve(source)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path} (or '{SCRATCH}' for random "
                                f"initialisation)")
    return path


def build_encoder(source, cfg) -> nn.Module:
    """The backbone (``head = Identity``, eval mode) of ``source`` built for ``cfg.data``'s clip
    size, or a randomly initialised ``classifier_name(cfg)`` for ``"scratch"``/None."""
    if is_scratch(source):
        return _scratch(cfg, 0).eval()
    path = _checkpoint(source)
    d = cfg.data
    try:
        return load_model(path, task="encoder", num_frames=d.num_frames, img_size=d.img_size)
    except UntrustedCheckpointError:  # its own message says what to do
        raise
    except ValueError as e:
        raise ValueError(f"cannot load a video encoder from {path}: {e}") from None


def build_classifier(source, cfg, num_classes: int | None = None) -> nn.Module:
    """A classifier (mean pooling + ``fc_norm`` + linear head) for ``cfg.data``'s clip size, with
    the fine-tuning build options of ``cfg.finetune`` (drop path, head init scale, head dropout;
    no effect in eval mode).

    * ``"scratch"``/None: a randomly initialised ``classifier_name(cfg)`` with ``num_classes``;
    * a checkpoint and ``num_classes``: its encoder with a head for ``num_classes`` (the
      checkpoint's head when it has that many classes, else a new one, said on stdout and in
      ``load_report.notes``): what fine-tuning starts from;
    * a checkpoint and no ``num_classes``: the checkpoint's own classifier (evaluation); a
      checkpoint without a head is an error that says what to do instead.
    """
    f, d = cfg.finetune, cfg.data
    build = dict(drop_path_rate=f.drop_path, init_scale=f.head_init_scale, fc_drop_rate=f.head_drop)
    if is_scratch(source):
        if not num_classes:
            raise ValueError("a classifier from scratch needs num_classes")
        return _scratch(cfg, num_classes, use_mean_pooling=True, **build)
    path = _checkpoint(source)
    kw = dict(num_frames=d.num_frames, img_size=d.img_size, **build)
    if num_classes:
        kw["num_classes"] = num_classes
    try:
        model = load_model(path, task="classify", **kw)
    except UntrustedCheckpointError:  # its own message says what to do
        raise
    except ValueError as e:
        if num_classes is None and "needs num_classes" in str(e):
            raise ValueError(f"{path} holds no classification head (a pre-training or encoder "
                             f"checkpoint): fine-tune it first (`mgmae finetune {path}`), or use "
                             f"`mgmae linprobe` / `mgmae extract`") from None
        if num_classes is None:
            raise ValueError(f"cannot evaluate {path}: {e}") from None
        raise ValueError(f"cannot fine-tune from {path}: no usable video encoder in it. {e}") from None
    rep = model.load_report
    if num_classes and rep.source_kind == "classify" and any(
            k.startswith("head.") for k in rep.initialised):
        print(f"[mgmae] note: the classification head of {path} is not for {num_classes} "
              f"classes (the data's); it is re-initialised")
        rep.notes.append(f"head re-initialised for {num_classes} classes")
    return model


def _part_of(key: str) -> str:
    return "encoder" if key.startswith("encoder.") else "decoder"


def init_pretrain_model(model: nn.Module, source, cfg) -> str:
    """Copy the weights of checkpoint ``source`` (any file :func:`load_model` reads) into the
    pre-training ``model`` built from ``cfg`` (``train.init_from``); returns the line that says
    what was initialised and what was not.

    The encoder and the decoder are copied where the file has them; a file without a decoder (a
    fine-tuned classifier, an encoder) gives the encoder only, its head and ``fc_norm`` unused and
    the decoder (and the final ``norm``, when the file has none) left at their random
    initialisation. The architecture is the config's: a file of another size is a ValueError
    listing the tensors whose shapes differ. Position tables are fixed sinusoids, rebuilt for
    ``cfg.data``'s clip size."""
    path = _checkpoint(source)
    d = cfg.data
    try:
        src = load_model(path, num_frames=d.num_frames, img_size=d.img_size)
    except UntrustedCheckpointError:  # its own message says what to do
        raise
    except ValueError as e:
        raise ValueError(f"train.init_from {path}: {e}") from None
    rep = src.load_report
    buffers = {name for name, _ in model.named_buffers()}
    target = {k: v for k, v in model.state_dict().items() if k not in buffers}
    src_buffers = {name for name, _ in src.named_buffers()}
    given = {_from_canonical_ours(_to_canonical_ours(k, rep.task), "pretrain"): v
             for k, v in src.state_dict().items() if k not in src_buffers}
    mismatched = [f"{k} {tuple(given[k].shape)} in the file vs {tuple(v.shape)} in the config"
                  for k, v in target.items() if k in given and given[k].shape != v.shape]
    unused = [k for k in given if k not in target]
    absent = [k for k in target if k not in given]
    has_decoder = any(_part_of(k) == "decoder" for k in given)
    # what may be absent: the whole decoder of a file without one, the final norm of an encoder
    # trained with mean pooling (HF's use_mean_pooling, fine-tuned classifiers)
    allowed = {k for k in absent if k.startswith("encoder.norm.") or
               (not has_decoder and _part_of(k) == "decoder")}
    allowed_unused = {k for k in unused if k.startswith(("encoder.head.", "encoder.fc_norm."))}
    wrong_depth = [k for k in absent if k not in allowed] + [k for k in unused if k not in allowed_unused]
    if mismatched or wrong_depth:
        arch = rep.arch
        problems = []
        if mismatched:
            problems.append(f"{len(mismatched)} tensors differ in shape: {'; '.join(mismatched[:4])}"
                            + (f"; ... (+{len(mismatched) - 4})" if len(mismatched) > 4 else ""))
        if wrong_depth:
            problems.append(f"{len(wrong_depth)} tensors are in only one of them: "
                            f"{', '.join(_collapse(wrong_depth)[:6])}")
        decoder = (f" and a {arch['decoder_embed_dim']}-wide, {arch['decoder_depth']}-deep decoder"
                   if has_decoder else "")
        raise ValueError(f"train.init_from {path} holds a {arch['embed_dim']}-wide, {arch['depth']}-deep "
                         f"encoder (patch {arch['patch_size']}, tubelet {arch['tubelet_size']}){decoder}, "
                         f"not the config's {cfg.model.name} (tubelet {cfg.model.tubelet_size}, "
                         f"decoder depth {cfg.model.decoder_depth or 'standard'}): "
                         + "; ".join(problems) + ". Set model.name / model.* to the file's architecture")
    copied = {k: v for k, v in given.items() if k in target}
    model.load_state_dict(copied, strict=False)
    counts = {part: sum(_part_of(k) == part for k in copied) for part in ("encoder", "decoder")}
    line = (f"init_from {path} ({rep.source}, {rep.source_kind} checkpoint): encoder {counts['encoder']} "
            f"tensors, decoder {counts['decoder']} tensors")
    missing = []
    if not has_decoder:
        missing.append("decoder (random init)")
    if any(k.startswith("encoder.norm.") for k in absent):
        missing.append("encoder.norm (fresh LayerNorm)")
    if missing:
        line += "; not in the file: " + ", ".join(missing)
    if unused:
        line += f"; unused: {', '.join(sorted({k.split('.')[1] for k in unused}))} ({len(unused)} tensors)"
    if has_decoder and rep.arch.get("norm_pix_loss") != model.norm_pix_loss:
        line += (f"; note: the file was trained with norm_pix_loss={rep.arch.get('norm_pix_loss')}, "
                 f"this run uses {model.norm_pix_loss}")
    if rep.source_kind != "pretrain":
        line += "; note: a file without a decoder gives the encoder only"
    return line
