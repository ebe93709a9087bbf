"""``mgmae reconstruct``: what a pre-training checkpoint reconstructs from the visible cubes.

::

    mgmae reconstruct CKPT VIDEO_OR_LIST [-c RECIPE] [key=value ...] [--masker tube|random|motion_guided]
                      [--mask-ratio 0.9] [--flow dis] [--clips 4] [--stride 2] [--seed 0] [-o out/]

``CKPT`` is any pre-training checkpoint :func:`mgmae.convert.load_model` reads: ours, an official
VideoMAE / V2 / MGMAE ``.pth``, a Hugging Face ``VideoMAEForPreTraining`` directory (a classifier
or encoder has no decoder: an error). The architecture is the file's; the clips and the masker
come from a config like every command's: the checkpoint's own (ours carry theirs; for other
files the defaults with the file's clip size), or ``-c RECIPE``, then ``key=value`` overrides
(``masking.*``, ``flow.*``, ``data.num_frames``, ``data.img_size``, ``data.sampling_rate``, ...),
then the flags, aliases of those keys (as in ``mgmae masks``).

``VIDEO_OR_LIST`` is a video file or a frame folder (``--clips`` clips spread over it), a list
file or a folder of videos (one centred clip from each of ``--clips`` videos spread over it), or
the word ``synthetic`` (the built-in moving shapes): the clips of :func:`mgmae.masks.load_clips`.

For every clip it writes ``<name>.png`` (rows: input, visible cubes with the hidden ones black,
i.e. the mask, and the reconstruction with the visible cubes pasted from the input; every second
frame) and ``<name>.gif`` (the three side by side, every frame), the pictures the end of
pre-training draws (:func:`mgmae.viz.draw_reconstructions`: norm-pix predictions are shown
de-normalized with each hidden cube's true mean and std, as in the papers' figures), and prints
their paths and the clip's loss (on the model's target: per-cube normalised pixels when it was
trained with ``norm_pix_loss``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from mgmae.commands import (add_common_flags, add_config_args, check_output, command, show_progress,
                            split_positionals)
from mgmae.config import DATA_FLOWS
from mgmae.masking import list_maskers

__all__ = ["build_parser", "cli_main", "resolve_config", "run"]

FLAGS = ("masker", "mask_ratio", "flow", "stride", "seed", "root")  # aliases as in `mgmae masks`


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgmae reconstruct",
        description="Input / visible cubes / reconstruction of clips by a pre-training checkpoint (ours, "
                    "official VideoMAE / V2 / MGMAE, Hugging Face), a PNG strip and a GIF per clip.")
    add_config_args(p, positionals="CKPT SOURCE",
                    config_help="YAML recipe for the clips and the masker (default: the checkpoint's "
                                "own config)")
    p.add_argument("--masker", choices=list_maskers(), help="= masking.name")
    p.add_argument("--mask-ratio", type=float, help="= masking.mask_ratio")
    p.add_argument("--flow", help="= flow.name (motion-guided masks): dis, farneback, raft_small, ...")
    p.add_argument("--stride", type=int, help="= data.sampling_rate")
    p.add_argument("--seed", type=int, help="= train.seed (the masks' random draw)")
    p.add_argument("--root", help="= data.root, for relative paths in a list file")
    p.add_argument("--clips", type=int, default=4, help="clips per video (or videos of a list)")
    p.add_argument("--backend", default="pyav", help="video decoder (pyav, torchcodec, decord)")
    p.add_argument("-o", "--out", default="reconstruct_out", help="output folder (default: reconstruct_out/)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no description of the model: one line per clip")
    add_common_flags(p)
    return p


def load_pretraining_model(path: str | Path, **overrides) -> torch.nn.Module:
    from mgmae.convert import load_model
    from mgmae.models.mae import PretrainVideoMAE

    model = load_model(path, **overrides)
    if not isinstance(model, PretrainVideoMAE):
        raise ValueError(f"{path} is a {model.load_report.source_kind} checkpoint without a decoder: "
                         f"reconstructions need a pre-training checkpoint (ours, an official VideoMAE / "
                         f"V2 / MGMAE pre-training .pth, or a Hugging Face VideoMAEForPreTraining directory)")
    return model


def resolve_config(a: argparse.Namespace, overrides: Sequence[str], model):
    """The checkpoint's config (or ``-c``), then ``key=value``, then the flags; ``model.*`` made to
    describe ``model``."""
    from mgmae.config import Config, apply_overrides, load_config, set_key, validate
    from mgmae.convert import arch_of, config_for
    from mgmae.masks import ALIASES
    from mgmae.models.build import sync_model_config

    if a.config:
        cfg = load_config(a.config, list(overrides))
    else:
        arch, kind = arch_of(model)
        base = config_for(arch, kind, model.load_report.config)
        cfg = Config.from_dict(base) if base else Config()
        if base is None:  # not a registered size: the clip size still comes from the file
            cfg.data.num_frames, cfg.data.img_size = arch.num_frames, arch.img_size
        apply_overrides(cfg, list(overrides))
    for dest in FLAGS:
        if getattr(a, dest) is not None:
            set_key(cfg, ALIASES[dest], getattr(a, dest))
    sync_model_config(cfg, model)
    validate(cfg)
    return cfg


def _clips_tensor(clips, img_size: int) -> torch.Tensor:
    from mgmae.data.transforms import normalize
    from mgmae.masks import _prepare

    return torch.stack([normalize(_prepare(c.frames, img_size)[0]) for c in clips])  # [B, C, T, S, S]


def run(ckpt: str, source: str, a: argparse.Namespace, overrides: Sequence[str] = ()) -> list[Path]:
    from mgmae.engine.pretrain import masker_from_config
    from mgmae.masks import load_clips
    from mgmae.viz import draw_reconstructions

    if a.clips < 1:
        raise ValueError(f"--clips must be >= 1, got {a.clips}")
    check_output(a.out, "the output", directory=True)
    model = load_pretraining_model(ckpt)
    cfg = resolve_config(a, overrides, model)
    d = cfg.data
    pe = model.encoder.patch_embed
    if (d.num_frames, d.img_size) != (pe.num_frames, pe.img_size):  # position tables for the clip size
        model = load_pretraining_model(ckpt, num_frames=d.num_frames, img_size=d.img_size)
    # flows that come with the clips: the exact flow of the synthetic videos, the codec's vectors
    with_clips = cfg.masking.name == "motion_guided" and cfg.flow.name in (*DATA_FLOWS, "codec")
    if with_clips and (cfg.flow.name == "codec") == (source == "synthetic"):
        print(f"[mgmae] flow.name={cfg.flow.name} has no flow for {source!r}; reconstruct computes "
              f"DIS flow on the clips instead")
        cfg.flow.name, with_clips = "dis", False
    masker = masker_from_config(cfg, model.patch_size, seed=cfg.train.seed)
    clips = load_clips(source, num_frames=d.num_frames, stride=d.sampling_rate, clips=a.clips,
                       img_size=d.img_size, seed=cfg.train.seed, root=d.root, backend=a.backend,
                       codec=with_clips and cfg.flow.name == "codec")
    video = _clips_tensor(clips, d.img_size)  # [B, C, T, S, S]
    if with_clips:  # each clip's own flow, through the same centre crop as its frames
        from mgmae.data.transforms import center_crop_params

        g = torch.Generator().manual_seed(cfg.train.seed)
        mask = torch.cat([masker.mask_views(
            torch.from_numpy(c.frames).permute(0, 3, 1, 2),
            [center_crop_params(*c.frames.shape[1:3], d.img_size)], flow_fn=c.flow_fn, generator=g)
            for c in clips])  # [B, N]
    else:
        mask = masker(video)  # [B, N]
    rep = model.load_report
    target = "per-cube normalised pixels" if model.norm_pix_loss else "pixels"
    if not getattr(a, "quiet", False):
        print(f"[mgmae] {ckpt} ({rep.source}): {cfg.model.name}, {d.num_frames} x {d.img_size} px clips; "
              f"{masker!r}; loss on {target}")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(clips), desc="reconstruct", unit="clip", leave=False, dynamic_ncols=True,
               disable=not getattr(a, "progress", False))
    for i, clip in enumerate(clips):
        png, gif = out / f"{clip.name}.png", out / f"{clip.name}.gif"
        loss = draw_reconstructions(model, video[i:i + 1], mask[i:i + 1], png, gif,
                                    labels=[f"{clip.label}, {cfg.masking.name} mask"])
        written += [png, gif]
        bar.write(f"{png}  {gif}  loss {loss:.4f}", file=sys.stdout)
        bar.update(1)
    bar.close()
    return written


@command("reconstruct")
def cli_main(argv: list[str]) -> int:
    """``mgmae reconstruct CKPT SOURCE [-c CONFIG] [key=value ...] [--flag ...] [-o out/]``."""
    parser = build_parser()
    a = parser.parse_intermixed_args(argv)
    pos, overrides = split_positionals(a.args, 2)
    if len(pos) < 2:
        parser.error("give a pre-training checkpoint and a video, a folder, a list file or 'synthetic'")
    a.progress = show_progress(a.quiet)
    with torch.no_grad():
        run(pos[0], pos[1], a, overrides)
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_main())
