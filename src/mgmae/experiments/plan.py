"""The plan of ``mgmae study``: a YAML recipe resolved into what runs (:class:`Plan`).

A recipe has three sections: ``base:`` (an mgmae config shared by every run, nested or dotted
keys), ``study:`` (strategies, seeds, budgets, ablations, the comparisons the report tests) and
``quick:`` (the ``base``/``study`` entries that ``--quick`` replaces). Every config a plan can
produce is validated when it is read, so a bad key fails before an hour of runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mgmae.config import Config, apply_overrides, flatten, load_config, recipe_path, validate
from mgmae.data.synthetic import APPEARANCE_CLASSES, MOTION_CLASSES

__all__ = ["Ablation", "CHANCE", "LABELS", "NUM_CLASSES", "Plan", "Strategy", "load_plan"]

LABELS = ("motion", "appearance")
NUM_CLASSES = {"motion": len(MOTION_CLASSES), "appearance": len(APPEARANCE_CLASSES)}
CHANCE = {lab: 100 / k for lab, k in NUM_CLASSES.items()}  # top-1 (%) of a constant guess

# what the report compares when the recipe does not say (study.reference, study.comparisons):
# pairs (a, b) of strategy names whose paired differences a - b are tested; names the plan lacks
# are left out
REFERENCE = "tube"
COMPARISONS = (("motion_guided_dis", "tube"), ("motion_guided_gt", "tube"), ("motion_guided_codec", "tube"),
               ("motion_guided_gt", "motion_guided_dis"), ("motion_guided_codec", "motion_guided_dis"), ("motion_guided_official", "motion_guided_gt"),
               ("tube", "random"))


@dataclass
class Strategy:
    name: str  # identifier (run names, file names)
    label: str  # shown in tables
    overrides: dict[str, Any]  # dotted config keys on top of the base config
    note: str = ""


@dataclass
class Ablation:
    group: str  # e.g. "base_frame"
    title: str  # e.g. "base frame"
    reference: str  # label of the reference row (the reference strategy's own setting)
    variants: list[Strategy]


@dataclass
class Plan:
    """Everything a study does, resolved from the YAML recipe (``study:`` plus ``--quick``'s
    ``quick:`` block and command-line options)."""

    name: str
    mode: str  # "full" | "quick"
    title: str  # the report's heading
    protocol: str  # Markdown, fixed before the first run: printed under the heading ("" = none)
    base: dict[str, Any]  # dotted overrides shared by every run
    seeds: list[int]
    pretrain_steps: int
    strategies: list[Strategy]
    finetune_steps: int
    eval_videos: int  # held-out synthetic videos (seed data.synthetic_seed + 1) for LP / FT accuracy
    mask_clips: int  # held-out clips for the tracking rate and the held-out reconstruction loss
    loss_tail: int  # the last N logged steps give "loss at the end of pre-training"
    ablation_reference: str | None = None
    ablation_seeds: list[int] = field(default_factory=list)
    ablations: list[Ablation] = field(default_factory=list)
    skipped_ablations: list[str] = field(default_factory=list)  # titles the full recipe has, not run here
    output_dir: str = "runs/study"
    labels: tuple[str, ...] = LABELS
    finetune_overrides: dict[str, Any] = field(default_factory=dict)  # keys for the FT runs only
    example_clip: int | None = None  # mask clip drawn in the pictures (None: its main object moves fastest)
    ablation_finetune: bool = True  # also fine-tune the ablation encoders (else: linear probe only)
    threads: int | None = None  # torch threads of the study process (None: cores - loader workers)
    reference: str | None = None  # the strategy others are compared with in the loss plots and reading
    comparisons: list[tuple[str, str]] = field(default_factory=list)  # (a, b): a - b tested, per seed

    def config(self, *overrides: dict[str, Any]) -> Config:
        cfg = load_config(None)
        apply_overrides(cfg, self.base)
        for o in overrides:
            apply_overrides(cfg, o)
        validate(cfg)
        return cfg

    def strategy(self, name: str) -> Strategy:
        for s in self.strategies:
            if s.name == name:
                return s
        raise KeyError(f"no strategy named {name!r} (have: {', '.join(s.name for s in self.strategies)})")


def _strategies(raw: dict[str, Any], where: str) -> list[Strategy]:
    out = []
    for name, spec in (raw or {}).items():
        if not isinstance(spec, dict):
            raise ValueError(f"{where}.{name}: expected a mapping with 'set' (config keys), got {spec!r}")
        unknown = set(spec) - {"label", "set", "note"}
        if unknown:
            raise ValueError(f"{where}.{name}: unknown field(s) {sorted(unknown)}; use label, set, note")
        out.append(Strategy(str(name), str(spec.get("label", name)), flatten(spec.get("set") or {}),
                            str(spec.get("note", ""))))
    return out


_STUDY_KEYS = {"name", "title", "protocol", "seeds", "pretrain_steps", "strategies", "finetune_steps", "eval_videos",
               "mask_clips", "loss_tail", "ablation_reference", "ablation_seeds", "ablations",
               "output_dir", "labels", "finetune", "example_clip", "ablation_finetune", "threads",
               "reference", "comparisons"}


def load_plan(path: str | Path, *, quick: bool = False, seeds: int | None = None,
              output_dir: str | None = None, overrides: list[str] | None = None) -> Plan:
    """Read a study recipe: ``base:`` (an mgmae config, nested or dotted keys), ``study:`` (what
    to run) and ``quick:`` (``base``/``study`` entries that ``--quick`` replaces). ``overrides``:
    ``key=value`` config keys on top of ``base`` (every run), as every command takes them;
    ``train.output_dir=DIR`` is where the runs are cached (the same as ``output_dir``)."""
    p = recipe_path(path)  # a file, or a packaged recipe by name (study_small)
    raw = yaml.safe_load(p.read_text()) or {}
    unknown = set(raw) - {"base", "study", "quick"}
    if unknown:
        raise ValueError(f"{p}: unknown top-level section(s) {sorted(unknown)}; use base, study, quick")
    base = flatten(raw.get("base") or {})
    study = dict(raw.get("study") or {})
    if quick:
        q = raw.get("quick") or {}
        base.update(flatten(q.get("base") or {}))
        study.update(q.get("study") or {})
    if overrides:
        extra = apply_overrides(Config(), list(overrides))  # checks the form and the keys
        given = {k.split("=", 1)[0].strip() for k in overrides}
        flat = flatten(extra.to_dict())
        if "train.output_dir" in given:
            output_dir = flat.pop("train.output_dir")
        base.update({k: v for k, v in flat.items() if k in given})
    bad = set(study) - _STUDY_KEYS
    if bad:
        raise ValueError(f"{p}: unknown study key(s) {sorted(bad)}; allowed: {', '.join(sorted(_STUDY_KEYS))}")
    n_seeds = int(seeds if seeds is not None else study.get("seeds", 3))
    if n_seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {n_seeds}")
    ablations = []
    for group, spec in (study.get("ablations") or {}).items():
        ablations.append(Ablation(str(group), str(spec.get("title", group)), str(spec.get("reference", "reference")),
                                  _strategies(spec.get("variants") or {}, f"ablations.{group}.variants")))
    n_abl = min(int(study.get("ablation_seeds", n_seeds)), n_seeds)
    plan = Plan(
        name=str(study.get("name", p.stem)) + ("-quick" if quick else ""),
        title=str(study.get("title", f"Study {study.get('name', p.stem)}")),
        protocol=str(study.get("protocol") or "").strip(),
        mode="quick" if quick else "full",
        base=base,
        seeds=list(range(n_seeds)),
        pretrain_steps=int(study.get("pretrain_steps", 200)),
        strategies=_strategies(study.get("strategies") or {}, "study.strategies"),
        finetune_steps=int(study.get("finetune_steps", 64)),
        eval_videos=int(study.get("eval_videos", 256)),
        mask_clips=int(study.get("mask_clips", 32)),
        loss_tail=int(study.get("loss_tail", 20)),
        ablation_reference=study.get("ablation_reference"),
        ablation_seeds=list(range(n_abl)),
        ablations=[a for a in ablations if a.variants],
        skipped_ablations=[str(spec.get("title", g)) for g, spec in ((raw.get("study") or {}).get("ablations") or {}).items()
                           if quick and (spec or {}).get("variants")],
        output_dir=str(output_dir or study.get("output_dir", "runs/study")),
        labels=tuple(study.get("labels", LABELS)),
        finetune_overrides=flatten(study.get("finetune") or {}),
        example_clip=None if study.get("example_clip") is None else int(study["example_clip"]),
        ablation_finetune=bool(study.get("ablation_finetune", True)),
        threads=None if study.get("threads") is None else int(study["threads"]),
    )
    names = {s.name for s in plan.strategies}
    plan.reference = study.get("reference", REFERENCE if REFERENCE in names else None)
    if plan.reference is not None and plan.reference not in names:
        raise ValueError(f"{p}: study.reference={plan.reference!r} is not a strategy "
                         f"(have: {', '.join(sorted(names))})")
    comparisons = study.get("comparisons")
    if comparisons is None:
        plan.comparisons = [(a, b) for a, b in COMPARISONS if a in names and b in names]
    else:
        plan.comparisons = []
        for pair in comparisons:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and set(pair) <= names):
                raise ValueError(f"{p}: study.comparisons: {pair!r} is not a pair of strategy names "
                                 f"(have: {', '.join(sorted(names))})")
            plan.comparisons.append((str(pair[0]), str(pair[1])))
    if not plan.strategies:
        raise ValueError(f"{p}: study.strategies is empty")
    for lab in plan.labels:
        if lab not in LABELS:
            raise ValueError(f"study.labels: {lab!r} is not one of {LABELS}")
    if plan.ablations:
        if plan.ablation_reference is None:
            raise ValueError(f"{p}: ablations need study.ablation_reference (a strategy name)")
        plan.strategy(plan.ablation_reference)
    # fail early on a bad key anywhere (not after an hour of runs)
    plan.config()
    for s in plan.strategies:
        plan.config(s.overrides)
    for a in plan.ablations:
        for v in a.variants:
            plan.config(plan.strategy(plan.ablation_reference).overrides, v.overrides)
    plan.config(plan.finetune_overrides)
    if plan.example_clip is not None and not 0 <= plan.example_clip < plan.mask_clips:
        raise ValueError(f"study.example_clip={plan.example_clip} must be < mask_clips={plan.mask_clips}")
    return plan
