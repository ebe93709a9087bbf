"""Configuration: dataclasses with stable dotted keys, YAML recipes and ``key=value`` overrides.

The defaults *are* the built-in demo (``mgmae pretrain`` with no arguments): a nano ViT MAE on the
seeded synthetic moving-shapes dataset, small enough to pre-train on a laptop CPU in minutes.
Recipes override what they need; the resolved config is saved in every run dir. The recipes ship
inside the package (``src/mgmae/configs/``, also reachable as ``configs/`` in a checkout): ``-c``
takes a path or a recipe's name (``-c pretrain_vit_base_ssv2``), ``mgmae config --list`` names them.

This module imports nothing heavy (no torch): ``mgmae config --keys`` stays fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ModelConfig:
    name: str = "mae_vit_nano_patch8"  # registry name, see mgmae.models.list_models()
    tubelet_size: int = 2  # frames per cube
    decoder_depth: int | None = None  # None: the size's standard (4, the paper's; nano: 2)
    decoder_embed_dim: int | None = None  # None: the standard one for the encoder size
    decoder_num_heads: int | None = None  # None: the standard one for the decoder width
    # target = per-patch normalized pixels (true: the paper's setting, used by every recipe). The
    # demo default is raw pixels: a nano model in CPU minutes stays on the norm-pix plateau (~0.99).
    norm_pix_loss: bool = False
    drop_path: float = 0.0  # stochastic depth rate of the encoder blocks during pre-training
    grad_checkpointing: bool = False  # activation checkpointing per block (saves memory)
    # fixed position table: sincos_1d (VideoMAE's, over the flattened token index; needed by every
    # published checkpoint and the HF export) or sincos_3d (separable t/h/w sin-cos; learns much
    # faster at small scale, see docs/notes/2026-11-25-mae-vs-spatial-smoothing.md)
    pos_embed: str = "sincos_1d"


@dataclass
class DataConfig:
    dataset: str = "auto"  # auto | synthetic | list | folder (auto: synthetic unless train_list is set)
    train_list: str | None = None  # list file (path [num_frames] label) or folder-per-class root
    val_list: str | None = None  # validation list (fine-tuning, probes; mgmae eval --split val)
    test_list: str | None = None  # test list (mgmae eval; the end of fine-tuning)
    root: str | None = None  # prepended to relative paths in the list files
    num_frames: int = 16  # frames per clip
    sampling_rate: int = 2  # frame stride of dense sampling
    sampling: str = "dense"  # dense (pre-training / Kinetics) | segment (SSv2)
    img_size: int = 64  # clip side in pixels (square crops)
    num_sample: int = 1  # repeated augmentation: clips per video per step
    scales: list[float] = field(default_factory=lambda: [1.0, 0.875, 0.75, 0.66])  # multi-scale crop: sides as shares of the short side
    flip: bool = True  # horizontal flip (turn off for SSv2: left/right is in the label)
    # test / validation views of real videos: the short side resized to this, then img_size crops
    # (null: img_size, the official scripts' --short_side_size 224)
    short_side_size: int | None = None
    # list files: auto (inferred, and said) | path | path_label | path_frames_label (frame folders,
    # SSv2) | path_start_frames (VideoMAE V2 / MGMAE pre-training lists: "video.mp4 0 -1", "folder 1 58")
    list_format: str = "auto"
    backend: str = "pyav"  # video decoder: pyav | torchcodec | decord | frames (a directory is always frames)
    frame_template: str = "img_{:05d}.jpg"  # frame folders: file names, {} = frame number
    frame_start_index: int = 1  # frame folders: the number of the first frame (img_00001.jpg: 1)
    pad: str = "loop"  # a video shorter than a clip (num_frames x sampling_rate): loop | repeat_last (counted and reported) | error
    max_fail_frac: float = 0.05  # stop when more than this share of the videos cannot be read
    max_tries: int = 10  # replacements tried for one unreadable video before giving up
    # built-in synthetic data
    synthetic_videos: int = 256  # how many videos
    synthetic_label: str = "motion"  # motion | appearance (which label the classifier sees)
    synthetic_seed: int = 0  # seed of the videos (held-out ones: synthetic_seed + 1)
    synthetic_speed: float = 1.0  # every velocity of the synthetic videos (objects, background) x this; 1: the built-in speeds
    # encode the synthetic videos to H.264 (libx264's defaults) and train on the decoded frames, as
    # from real files; flow.name=codec then takes their motion vectors
    synthetic_encode: bool = False


@dataclass
class MaskingConfig:
    name: str = "motion_guided"  # a masker registry name: random | tube | motion_guided | registered
    mask_ratio: float = 0.9  # share of the cubes hidden from the encoder
    where: str = "loader"  # loader (CPU workers) | step (batched on the training device)
    # motion_guided options; their allowed values: mgmae.masking.MOTION_GUIDED_CHOICES
    base_frame: str = "middle"  # the frame the mask map starts on
    init_map: str = "mix_gauss"  # how the map on the base frame is drawn
    warp: str = "backward"  # how the map is carried to the next frame
    hole_filling: str = "consist"  # what fills the map where the warp samples outside the frame
    topk_on_all: bool = False  # motion_guided: top-k over the whole clip instead of per slice
    exposure_chance: float = 0.0  # motion_guided: official code's random exposure of masked cubes
    # motion_guided: the official MGMAE code's masks, one switch (its count, bumps, exposure, full
    # map, direction and warp at the border; docs/design.md section 3); false: ours, corrected
    official_compat: bool = False
    # motion_guided: flow direction before the base frame, corrected (the mask follows the motion) |
    # official (the official code's, against the motion); null: official_compat decides
    direction: str | None = None
    # motion_guided: visible cubes per slice, tube (hw - int(hw * ratio), VideoMAE's: 20 of 196) |
    # official (int(hw * (1 - ratio)), the official MGMAE code's: 19 of 196); null: tube, or
    # official with official_compat
    visible_count: str | None = None
    # motion_guided: exposure noise, scaled (by the scores' std) | official (N(0, 1)); null: scaled,
    # or official with official_compat
    exposure: str | None = None
    # motion_guided: mix_gauss bump width in pixels (null: patch_size / 3; the official code's is
    # patch / sqrt(2), 11.3 for 16-pixel patches)
    gauss_sigma: float | None = None
    # motion_guided: pixels per mask-map cell (divides the patch size; 1 = full resolution;
    # null: patch_size // 8, i.e. 8x8 cells per patch, see bench/map_stride.py; with flow.name=codec
    # patch_size // 4: the codec's 8-pixel blocks track as well on it, bench/codec_flow.py)
    map_stride: int | None = None
    # VideoMAE V2's dual masking: the decoder reconstructs only the positions a running-cell mask
    # leaves (none | run_cell); decoder_mask_ratio: the share it skips (V2's recipes: 0.5)
    decoder_mask: str = "none"
    decoder_mask_ratio: float = 0.5  # run_cell: share of the positions the decoder skips


@dataclass
class FlowConfig:
    # dis | farneback | raft_small | raft_large | zero | gt (synthetic data) | codec (the motion
    # vectors of the video files, almost free; see docs/flow.md) | any name of the flow registry
    # (mgmae.flow.list_flows(), register_flow)
    name: str = "dis"
    preset: str = "ultrafast"  # dis: ultrafast | fast | medium
    size: int | None = None  # compute flow at this resolution and rescale (speed knob)
    # RAFT weights file (local path), or "random": random weights for smoke tests and timing only
    # (the masks are meaningless; a loud warning and RANDOM WEIGHTS in the run log; never a default)
    weights: str | None = None
    iters: int | None = None  # RAFT refinement iterations; null: 6 for raft_small (the paper's), 12 for raft_large
    # RAFT frame pairs per forward call (masking.where=step runs B x (T-1) pairs: 24 clips x 15 =
    # 360 at once would hold tens of GB of activations). 32 pairs of 224 px keep RAFT-small's
    # no-grad activations (1/8-resolution features, GRU states and a 4-level correlation pyramid
    # of ~3 MB a pair) to a few GB while still filling a large GPU (bench/gpu_check.py (b))
    batch_size: int = 32
    # RAFT autocast: auto (bf16 on CUDA devices that support it, none on the CPU) | bf16 | fp16 |
    # none (float32); the flow comes back as float32 either way
    amp: str = "auto"
    # codec: what to do with a video that has no motion vectors (frame folders, all-intra or MJPEG
    # files, the synthetic dataset): null = stop with an error naming it; dis = DIS flow for it
    fallback: str | None = None


@dataclass
class TrainConfig:
    epochs: int = 20  # passes over the training videos
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    batch_size: int = 16  # videos per device per step (before repeated augmentation)
    accum_steps: int = 1  # micro-batches per optimizer step (gradient accumulation)
    lr: float | None = None  # absolute lr; None: blr * effective_videos / 256
    blr: float = 3e-2  # base lr per 256 videos; the demo's value (paper recipes: 1e-3)
    min_lr: float = 1e-5  # the cosine schedule ends here
    warmup_lr: float = 1e-6  # the linear warm-up starts here
    warmup_epochs: float = 2.0  # linear lr warm-up, in epochs
    weight_decay: float = 0.05  # AdamW weight decay (not on biases, norms and tokens)
    # cosine from weight_decay to this over the run, per optimizer step (VideoMAE); null: constant
    weight_decay_end: float | None = None
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas
    clip_grad: float | None = None  # clip the gradient norm to this; null: no clipping
    output_dir: str = "runs"  # run directories are made in this folder
    run_name: str | None = None  # None: <model>-<masker>-<timestamp>
    seed: int = 0  # weights, data order, augmentation and masks are functions of it
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 2  # data-loader worker processes (0: load in the main process)
    amp: str = "auto"  # auto (bf16 on capable GPUs, fp32 on CPU) | bf16 | fp16 | none
    log_every: int = 1  # write a log.jsonl line every N steps (and the last one)
    save_every_epochs: int = 0  # also keep every M-th epoch's checkpoint (0: none)
    save_every_steps: int = 0  # write a resume point (checkpoint-last.pth) every N steps (0: each epoch)
    keep_last: int = 2  # rolling resume points kept besides the kept epochs and the final one
    resume: str | None = None  # path, or "auto" for the newest valid checkpoint of the run dir
    # pre-training only: start from the weights of this checkpoint (ours, official VideoMAE / V2 /
    # MGMAE .pth, HF VideoMAE directory) with a fresh optimizer and schedule; a resume point wins
    init_from: str | None = None
    max_bad_steps: int = 5  # stop after this many consecutive non-finite losses (each is skipped)
    tensorboard: bool = True  # also log to TensorBoard when it is installed
    wandb: str | None = None  # also log to this Weights & Biases project (needs `pip install wandb`)
    vis_clips: int = 4  # clips in the reconstruction picture
    baseline_clips: int = 64  # clips on which the end of a run compares the loss with a trivial predictor
    compile: bool = False  # torch.compile the model
    fsdp: bool = False  # under torchrun: shard params/grads/optimizer state per block (fully_shard)


@dataclass
class FinetuneConfig:
    """Fine-tuning, linear probing and evaluation (``mgmae finetune|linprobe|eval``).

    The optimisation keys live here because their good values differ from pre-training's; the
    ``train.*`` keys that describe the run (device, amp, output_dir, run_name, seed, num_workers,
    accum_steps, max_steps, log_every, save_every_epochs, resume, compile) and the ``data.*`` keys
    are shared. The defaults are the built-in demo: the nano ViT on the synthetic motion labels.
    """

    model: str | None = None  # classifier for `scratch` runs; None: model.name without "mae_"
    num_classes: int | None = None  # None: from the data (class names or the largest label + 1)
    epochs: int = 10  # passes over the training videos
    batch_size: int = 16  # videos per device per step (x data.num_sample clips)
    lr: float | None = None  # absolute lr; None: blr * videos per step / 256
    blr: float = 3e-2  # base lr per 256 videos; the demo's (SSv2 ViT-B recipe: 2e-3; K400: 7e-4)
    min_lr: float = 1e-6  # the cosine schedule ends here
    warmup_lr: float = 1e-8  # the linear warm-up starts here
    warmup_epochs: float = 2.0  # linear lr warm-up, in epochs
    weight_decay: float = 0.05  # AdamW weight decay (not on biases, norms and tokens)
    weight_decay_end: float | None = None  # cosine from weight_decay to this (VideoMAE); null: constant
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas
    clip_grad: float | None = None  # clip the gradient norm to this; null: no clipping
    layer_decay: float = 0.75  # lr of block i (1-based) = lr * layer_decay ** (depth + 1 - i)
    drop_path: float = 0.1  # stochastic depth rate of the encoder blocks
    head_drop: float = 0.0  # dropout before the head
    head_init_scale: float = 0.001  # the new head's initial weights are scaled by this
    label_smoothing: float = 0.1  # of the cross-entropy targets (with mixup: of the mixed targets)
    mixup: float = 0.0  # mixup alpha (0: off; paper recipes: 0.8)
    cutmix: float = 0.0  # cutmix alpha (0: off; paper recipes: 1.0)
    cutmix_minmax: list[float] | None = None  # [min, max] box size ratio of cutmix, instead of cutmix's alpha (timm)
    mixup_prob: float = 1.0  # probability of mixing a batch at all
    mixup_switch_prob: float = 0.5  # probability of cutmix instead of mixup when both are on
    mixup_mode: str = "batch"  # batch | pair | elem
    rand_aug: str | None = "rand-m7-n4-mstd0.5-inc1"  # timm RandAugment spec; null: off (real data)
    # training crop of real videos: random_resized (the official fine-tuning's: area crop_scale,
    # aspect crop_ratio) | multiscale (the pre-training crop, data.scales); synthetic data: multiscale
    crop: str = "random_resized"
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # random_resized: area share [lo, hi]
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333])  # random_resized: aspect ratio [lo, hi]
    reprob: float = 0.25  # random erasing probability (real data)
    remode: str = "pixel"  # random erasing fill: pixel | rand | const
    ema: bool = False  # keep an exponential moving average of the weights (timm ModelEmaV3)
    ema_decay: float = 0.9999  # ema: weight of the average at each step
    eval_every: int = 1  # validate every N epochs (the last epoch always)
    test_num_segment: int = 2  # multi-view test: temporal clips per video
    test_num_crop: int = 3  # multi-view test: spatial crops per clip
    synthetic_val_videos: int = 128  # held-out synthetic videos (seed data.synthetic_seed + 1); 0: none
    linprobe_bn: bool = True  # BatchNorm without affine before the linear probe (MAE)
    linprobe_epochs: int = 100  # passes over the cached features
    linprobe_lr: float = 1e-3  # AdamW on cached features
    linprobe_weight_decay: float = 0.0  # AdamW weight decay of the linear probe


@dataclass
class ProbeConfig:
    """Frozen evaluation with a trained head (``mgmae probe``): the encoder's weights never change;
    its tokens (no pooling) feed an attentive head, or its pooled features a linear one. Defaults
    follow V-JEPA's attentive probe (one query, one cross-attention block, the encoder's heads,
    AdamW lr 1e-3, weight decay 0.01); docs/probe.md says why and what each evaluation measures."""

    head: str = "attentive"  # attentive (cross-attention over all tokens) | linear (pooled features)
    depth: int = 1  # attentive: blocks; depth - 1 self-attention blocks over the tokens, then the cross-attention
    num_heads: int | None = None  # attentive: attention heads; null: the encoder's
    num_queries: int = 1  # attentive: learnable query tokens (averaged before the classifier)
    mlp_ratio: float = 4.0  # attentive: hidden width of the blocks' MLP, x the token width
    epochs: int = 20  # passes over the training videos
    batch_size: int = 32  # videos per probe step
    lr: float = 1e-3  # AdamW peak lr (cosine to 0 after warmup)
    warmup_epochs: float = 1.0  # linear lr warm-up, in epochs
    weight_decay: float = 0.01  # not on biases, norms and the queries
    label_smoothing: float = 0.0  # of the cross-entropy targets
    cache_gb: float = 4.0  # keep the frozen tokens in memory (float16) when they fit this; else recompute each epoch
    test_views: bool = True  # score the validation videos with finetune.test_num_segment x test_num_crop views (as mgmae eval)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_yaml())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        cfg = cls()
        apply_overrides(cfg, flatten(d))
        return cfg


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def valid_keys(cfg: Config | None = None) -> list[str]:
    cfg = cfg or Config()
    return sorted(flatten(cfg.to_dict()).keys())


def _field_type(section: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(section))
    return hints[name]


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML-parsed value to the annotated type of ``key`` or raise a clear ValueError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for a in non_none:
            try:
                return _coerce(key, value, a)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(errors[0])
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"config key '{key}' expects a list like [1, 2], got {value!r}")
        (inner,) = args or (Any,)
        return [_coerce(key, v, inner) for v in value]
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"config key '{key}' expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ValueError(f"config key '{key}' expects an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config key '{key}' expects a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise ValueError(f"config key '{key}' expects a string, got {value!r}")
        return str(value)
    return value


def set_key(cfg: Config, key: str, value: Any) -> None:
    """Set a dotted key, e.g. ``set_key(cfg, "train.lr", 1e-3)``; unknown keys suggest the closest."""
    parts = key.split(".")
    keys = valid_keys(cfg)
    if len(parts) != 2 or key not in keys:
        close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
        if not close:  # try matching the last part alone, e.g. "lr" -> "train.lr"
            close = sorted((k for k in keys if k.split(".")[-1] == parts[-1]),
                           key=lambda k: (not k.startswith("train."), k))
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise KeyError(f"unknown config key '{key}'.{hint} Valid keys: `mgmae config --keys`.")
    section = getattr(cfg, parts[0])
    tp = _field_type(section, parts[1])
    setattr(section, parts[1], _coerce(key, value, tp))


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``key=value`` as YAML (``0.9``, ``null``, ``[1,2]``, ``true``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Config, overrides: dict[str, Any] | list[str]) -> Config:
    if isinstance(overrides, list):
        parsed: dict[str, Any] = {}
        for item in overrides:
            if "=" not in item:
                raise ValueError(
                    f"override {item!r} is not of the form key=value (e.g. train.epochs=10)"
                )
            k, v = item.split("=", 1)
            parsed[k.strip()] = parse_value(v)
        overrides = parsed
    for k, v in overrides.items():
        set_key(cfg, k, v)
    return cfg


RECIPES_DIR = Path(__file__).resolve().parent / "configs"


def list_recipes() -> dict[str, str]:
    """The packaged recipes, ``{name: description}``; the description is the first line of the
    comment the file starts with, up to a colon (empty without a comment)."""
    out = {}
    for p in sorted(RECIPES_DIR.glob("*.yaml")):
        first = next((ln.strip() for ln in p.read_text().splitlines() if ln.strip()), "")
        text = first.lstrip("#").strip() if first.startswith("#") else ""
        out[p.stem] = text.split(": ")[0].rstrip(",;")
    return out


def recipe_path(path_or_name: str | Path) -> Path:
    """An existing file as it is; otherwise a packaged recipe by name (``demo`` or ``demo.yaml``).
    Raises FileNotFoundError (one line: the closest names and every recipe) when neither exists."""
    p = Path(path_or_name)
    if p.is_file():
        return p
    name = p.name[:-len(".yaml")] if p.name.endswith(".yaml") else p.name
    if p.name == str(path_or_name) and name and (RECIPES_DIR / f"{name}.yaml").is_file():
        return RECIPES_DIR / f"{name}.yaml"
    names = list(list_recipes())
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise FileNotFoundError(f"config file not found: {p} (neither a file nor a packaged recipe).{hint}"
                            f" Recipes: {', '.join(names)} (`mgmae config --list`)")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML recipe ``path`` (a file, or a packaged recipe's name: see
    :func:`recipe_path`), then ``key=value`` overrides."""
    cfg = Config()
    if path is not None:
        p = recipe_path(path)
        try:
            with p.open() as fh:  # a stream: the error's mark names the file
                data = yaml.safe_load(fh) or {}
        except yaml.YAMLError as e:  # the mark says line and column
            raise ValueError(f"config file {p} is not valid YAML: {' '.join(str(e).split())}") from None
        if not isinstance(data, dict):
            raise ValueError(f"config file {p} must hold a mapping of sections, got {type(data)}")
        try:
            apply_overrides(cfg, flatten(data))
        except (KeyError, ValueError) as e:
            raise type(e)(f"{p}: {e.args[0]}") from None
    if overrides:
        apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


# Values a key may take. Masker and flow names come from their registries (mgmae.registry) and the
# motion-guided options from mgmae.masking.MOTION_GUIDED_CHOICES: see _choices().
_CHOICES = {
    "data.list_format": ("auto", "path", "path_label", "path_frames_label", "path_start_frames"),
    "data.backend": ("pyav", "torchcodec", "decord", "frames"),
    "data.pad": ("loop", "repeat_last", "error"),
    "probe.head": ("attentive", "linear"),
    "model.pos_embed": ("sincos_1d", "sincos_3d"),
    "data.dataset": ("auto", "synthetic", "list", "folder"),
    "data.sampling": ("dense", "segment"),
    "data.synthetic_label": ("motion", "appearance"),
    "masking.where": ("loader", "step"),
    "masking.decoder_mask": ("none", "run_cell"),
    "train.amp": ("auto", "bf16", "fp16", "none"),
    "flow.amp": ("auto", "bf16", "fp16", "none"),
    "finetune.mixup_mode": ("batch", "pair", "elem"),
    "finetune.crop": ("random_resized", "multiscale"),
    "finetune.remode": ("pixel", "rand", "const"),
}

# flow.name values that are not estimators: the synthetic dataset's exact flow
DATA_FLOWS = ("gt",)


class _OneOf:
    """Allowed values from several sources (a registry and fixed names), listed on demand."""

    def __init__(self, *sources):
        self.sources = sources

    def __contains__(self, value: object) -> bool:
        return any(value in s for s in self.sources)

    def __iter__(self):
        return (v for s in self.sources for v in s)


def _choices() -> dict[str, Any]:
    from mgmae.masking import MOTION_GUIDED_CHOICES  # light: no torch
    from mgmae.registry import FLOWS, MASKERS

    return {**_CHOICES, "masking.name": MASKERS,
            **{f"masking.{k}": v for k, v in MOTION_GUIDED_CHOICES.items()},
            "flow.name": _OneOf(DATA_FLOWS, FLOWS)}


def _check_choices(flat: dict[str, Any], keys=None) -> None:
    from mgmae.masking import MOTION_GUIDED_AUTO  # light: no torch

    for key, allowed in _choices().items():
        auto = key.startswith("masking.") and key[len("masking."):] in MOTION_GUIDED_AUTO  # null allowed
        if (keys is None or key in keys) and flat[key] not in allowed and not (auto and flat[key] is None):
            raise ValueError(f"config key '{key}' = {flat[key]!r}; allowed: {', '.join(allowed)}"
                             f"{' or null (masking.official_compat decides)' if auto else ''}")


def check_overrides(overrides: list[str]) -> None:
    """Check each ``key=value`` on its own, as on any config: a known key, a value of its type, one
    of its allowed values. What depends on other keys needs the whole config (:func:`validate`):
    this is the check for overrides that go on top of a config not known yet (a checkpoint's)."""
    cfg = apply_overrides(Config(), list(overrides))
    _check_choices(flatten(cfg.to_dict()), {str(o).split("=", 1)[0].strip() for o in overrides})


def validate(cfg: Config) -> None:
    """Reject impossible values early, naming the key, the value and what is allowed."""
    flat = flatten(cfg.to_dict())
    if cfg.masking.official_compat:  # the official masks: a key set otherwise contradicts the switch
        from mgmae.masking import official_conflicts  # light: no torch

        k = cfg.masking
        clash = official_conflicts(visible_count=k.visible_count, exposure=k.exposure,
                                   gauss_sigma=k.gauss_sigma, map_stride=k.map_stride, warp=k.warp)
        if clash:
            name, value, what = clash[0]
            fix = "set masking.warp=backward" if name == "warp" else f"leave masking.{name} unset (null)"
            raise ValueError(f"masking.{name}={value} contradicts masking.official_compat=true, which uses "
                             f"{what}: {fix}, or drop masking.official_compat")
    _check_choices(flat)
    if not 0.0 <= cfg.data.max_fail_frac <= 1.0:
        raise ValueError(f"config key 'data.max_fail_frac' must be in [0, 1], got {cfg.data.max_fail_frac}")
    if not cfg.data.synthetic_speed > 0:
        raise ValueError(f"config key 'data.synthetic_speed' must be > 0, got {cfg.data.synthetic_speed}")
    if cfg.data.max_tries < 0 or cfg.data.frame_start_index < 0:
        raise ValueError("config keys 'data.max_tries' and 'data.frame_start_index' must be >= 0, got "
                         f"{cfg.data.max_tries} and {cfg.data.frame_start_index}")
    pr = cfg.probe
    for key in ("depth", "num_queries", "epochs", "batch_size"):
        v = getattr(pr, key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"config key 'probe.{key}' must be an integer >= 1, got {v!r}")
    if pr.num_heads is not None and (isinstance(pr.num_heads, bool) or not isinstance(pr.num_heads, int)
                                     or pr.num_heads < 1):
        raise ValueError(f"config key 'probe.num_heads' must be an integer >= 1 or null (the encoder's), "
                         f"got {pr.num_heads!r}")
    if not (pr.lr > 0 and pr.weight_decay >= 0 and pr.cache_gb >= 0 and pr.warmup_epochs >= 0
            and 0 <= pr.label_smoothing < 1 and pr.mlp_ratio > 0):
        raise ValueError("config keys probe.lr and probe.mlp_ratio must be > 0, probe.weight_decay, "
                         "probe.cache_gb and probe.warmup_epochs >= 0, probe.label_smoothing in [0, 1)")
    if "{" not in cfg.data.frame_template:
        raise ValueError(f"config key 'data.frame_template' = {cfg.data.frame_template!r} needs a {{}} "
                         "field for the frame number, e.g. img_{:05d}.jpg")
    f = cfg.finetune
    if (len(f.crop_scale) != 2 or not 0 < f.crop_scale[0] <= f.crop_scale[1] <= 1
            or len(f.crop_ratio) != 2 or not 0 < f.crop_ratio[0] <= f.crop_ratio[1]):
        raise ValueError(f"finetune.crop_scale must be [lo, hi] in (0, 1] and finetune.crop_ratio "
                         f"[lo, hi] > 0, got {f.crop_scale} and {f.crop_ratio}")
    if cfg.data.short_side_size is not None and cfg.data.short_side_size < cfg.data.img_size:
        raise ValueError(f"data.short_side_size={cfg.data.short_side_size} is smaller than "
                         f"data.img_size={cfg.data.img_size} (the test crops)")
    if cfg.masking.gauss_sigma is not None and not cfg.masking.gauss_sigma > 0:
        raise ValueError(f"config key 'masking.gauss_sigma' must be > 0 (pixels) or null, got "
                         f"{cfg.masking.gauss_sigma}")
    if cfg.flow.fallback not in (None, "dis"):
        raise ValueError(f"config key 'flow.fallback' = {cfg.flow.fallback!r}; allowed: null, dis")
    if isinstance(cfg.flow.batch_size, bool) or not isinstance(cfg.flow.batch_size, int) or cfg.flow.batch_size < 1:
        raise ValueError(f"config key 'flow.batch_size' (RAFT frame pairs per call) must be an integer "
                         f">= 1, got {cfg.flow.batch_size!r}")
    if cfg.flow.iters is not None and (isinstance(cfg.flow.iters, bool) or not isinstance(cfg.flow.iters, int)
                                       or cfg.flow.iters < 1):
        raise ValueError(f"config key 'flow.iters' must be an integer >= 1 or null (the model's standard: "
                         f"6 for raft_small, 12 for raft_large), got {cfg.flow.iters!r}")
    if cfg.flow.name == "codec" and cfg.masking.where == "step":
        raise ValueError("flow.name=codec comes with the decoded clips in the loader workers: it needs "
                         "masking.where=loader (masking.where=step computes flow on the device: dis, "
                         "raft_small, ...)")
    if not 0.0 < cfg.masking.mask_ratio < 1.0:
        raise ValueError(f"masking.mask_ratio must be in (0, 1), got {cfg.masking.mask_ratio}")
    for key in ("data.num_frames", "data.img_size", "data.sampling_rate", "data.num_sample",
                "train.batch_size", "train.accum_steps", "train.epochs", "model.tubelet_size"):
        if flat[key] < 1:
            raise ValueError(f"config key '{key}' must be >= 1, got {flat[key]}")
    if cfg.data.num_frames % cfg.model.tubelet_size:
        raise ValueError(
            f"data.num_frames={cfg.data.num_frames} is not divisible by "
            f"model.tubelet_size={cfg.model.tubelet_size}"
        )
    if cfg.masking.decoder_mask == "run_cell":
        from mgmae.masking import cells_skipped  # light: no torch

        cells_skipped(cfg.masking.decoder_mask_ratio)
    if not cfg.data.scales or any(not 0.0 < x <= 1.0 for x in cfg.data.scales):
        raise ValueError(f"data.scales must be a non-empty list of crop scales in (0, 1], got "
                         f"{cfg.data.scales}")
    minimum = {"train.max_steps": 1, "train.max_bad_steps": 1, "train.save_every_steps": 0,
               "train.save_every_epochs": 0, "train.keep_last": 0}
    for key, low in minimum.items():
        if flat[key] is not None and flat[key] < low:
            hint = " (or null: the epochs decide)" if key == "train.max_steps" else ""
            raise ValueError(f"config key '{key}' must be >= {low}{hint}, got {flat[key]}")
    for p in ("train", "finetune"):
        wd, end = flat[f"{p}.weight_decay"], flat[f"{p}.weight_decay_end"]
        if end is not None and not (wd > 0 and end >= 0):
            raise ValueError(f"config key '{p}.weight_decay_end' = {end} needs {p}.weight_decay > 0 and a "
                             f"value >= 0 (null: constant weight decay); {p}.weight_decay = {wd}")
    if len(cfg.train.betas) != 2:
        raise ValueError(f"train.betas must be two numbers, got {cfg.train.betas}")
