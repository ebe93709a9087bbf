"""A command's config, checked before the command's heavy imports.

The commands that take a config (``-c RECIPE`` and ``key=value``) live in modules that import
torch, timm and the engine when they load: several seconds before a line of the command runs.
``mgmae`` (:func:`mgmae.cli.main`) first runs :func:`check_early` on the command line, which
imports only :mod:`mgmae.config`: a mistyped key, a value of the wrong type or outside its allowed
values, a recipe that does not exist or does not parse is reported in a fraction of a second, in
the command's own words (``mgmae finetune: error: unknown config key ...``, exit status 2).

The check never refuses what the command accepts. The command builds its config again as it always
did; this module builds the same one where the command line alone decides it:

- ``recipe`` commands (finetune, linprobe, probe, masks, data check; pretrain and config in
  :mod:`mgmae.cli`): the recipe (or the defaults) plus the overrides, loaded and validated whole;
- ``checkpoint`` commands (eval, extract, reconstruct): with ``-c`` (or ``scratch``) the same; else
  the config comes from the checkpoint, so each override is checked on its own
  (:func:`mgmae.config.check_overrides`): known key, type, allowed values;
- ``study``: each override on its own (they go on top of every run's config), and the recipe exists.

To find ``-c`` and the overrides it must know which options take values (``-o a=b`` is not an
override); :data:`SPECS` lists them per command and tests/test_front_door.py checks the list
against each command's real parser: a command that gains an option that takes a value adds it
there.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["SPECS", "Spec", "check_early"]


@dataclass(frozen=True)
class Spec:
    positionals: int  # positional arguments among the overrides (split_positionals)
    # the options that take values: (names of one option) -> how many values
    options: dict[tuple[str, ...], int] = field(default_factory=dict)
    mode: str = "recipe"  # recipe | checkpoint | study
    default_config: str | None = None
    # options that the command turns into overrides: option dest -> config key
    aliases: dict[str, str] = field(default_factory=dict)


_C = {("-c", "--config"): 1}
SPECS: dict[str, Spec] = {
    "finetune": Spec(1, {**_C, ("--resume",): 1, ("--seeds",): 1}),
    "linprobe": Spec(1, dict(_C)),
    "probe": Spec(1, {**_C, ("--head",): 1, ("--seeds",): 1}, aliases={"head": "probe.head"}),
    "eval": Spec(1, {**_C, ("-o", "--output"): 1, ("--split",): 1, ("--views",): 2, ("--batch-size",): 1},
                 mode="checkpoint"),
    "extract": Spec(2, {**_C, ("-o", "--output"): 1, ("--format",): 1, ("--views",): 2,
                        ("--batch-size",): 1, ("--window",): 1, ("--stride",): 1}, mode="checkpoint"),
    "reconstruct": Spec(2, {**_C, **{(f"--{o}",): 1 for o in (
        "masker", "mask-ratio", "flow", "stride", "seed", "root", "clips", "backend")},
        ("-o", "--out"): 1}, mode="checkpoint"),
    "masks": Spec(1, {**_C, **{(f"--{o}",): 1 for o in (
        "masker", "flow", "flow-size", "dis-preset", "weights", "num-frames", "img-size", "patch-size",
        "tubelet-size", "mask-ratio", "base-frame", "init-map", "warp", "direction", "clips", "stride",
        "seed", "root", "backend", "display-size", "frame-step", "fps")}, ("-o", "--out"): 1}),
    "data": Spec(1, {**_C, **{(f"--{o}",): 1 for o in (
        "root", "backend", "min-frames", "workers", "template", "start-index", "json")}}),
    "study": Spec(0, {**_C, ("--out",): 1, ("--seeds",): 1, ("--output-dir",): 1, ("--jobs",): 1},
                  mode="study", default_config="study_small"),
}


class _Unsure(Exception):
    """The command line does not parse here: the command's own parser will say why."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage and exit
        raise _Unsure(message)


def _parse(spec: Spec, argv: Sequence[str]) -> tuple[argparse.Namespace, list[str], list[str]]:
    p = _Parser(add_help=False)
    for names, n in spec.options.items():
        p.add_argument(*names, nargs=None if n == 1 else n)
    p.add_argument("args", nargs="*")
    ns, _ = p.parse_known_intermixed_args(list(argv))  # flags (--quiet ...) are not ours: left over
    from mgmae.commands import is_override

    pos = [a for a in ns.args if not is_override(a)][:spec.positionals]
    # (a word without "=" beyond the positionals is the command's to refuse: not checked here, so
    # that the value of an option missing from SPECS is never taken for an override)
    return ns, pos, [a for a in ns.args if is_override(a)]


def check_early(command: str, argv: Sequence[str]) -> None:
    """Raise the error (KeyError, ValueError, FileNotFoundError) that ``mgmae COMMAND argv`` would
    raise about its config, without importing more than :mod:`mgmae.config`; return quietly when
    the config is fine or cannot be known from the command line."""
    spec = SPECS.get(command)
    if spec is None or any(a in ("-h", "--help") for a in argv):
        return
    try:
        ns, pos, overrides = _parse(spec, argv)
    except _Unsure:
        return
    from mgmae.commands import check_keys_apply
    from mgmae.config import check_overrides, load_config, recipe_path

    check_keys_apply(command, overrides)
    for dest, key in spec.aliases.items():
        if getattr(ns, dest, None) is not None:
            overrides.append(f"{key}={getattr(ns, dest)}")
    config = getattr(ns, "config", None)
    whole = spec.mode == "recipe" or (spec.mode == "checkpoint" and (
        config is not None or (pos[:1] == ["scratch"] and command == "extract")))
    if command == "extract" and getattr(ns, "window", None) is not None:
        whole = False  # --window adds keys of its own: each override alone
    if whole:
        load_config(config, overrides)
        return
    check_overrides(overrides)
    if spec.mode == "study":
        recipe_path(config or spec.default_config)
