"""The ``mgmae`` command line: ``mgmae pretrain|finetune|eval|linprobe|extract|masks|reconstruct|data|
convert|config|study ...``.

Every command that reads a config takes it the same way: ``-c RECIPE`` (a path or a packaged
recipe's name) and ``key=value`` overrides, in any order with the options. Commands are imported
when they run, so ``mgmae --help`` and ``mgmae config --keys`` import no torch
(tests/test_cli.py), and a command's config is checked before its module is imported
(:mod:`mgmae.precheck`): a config error costs a fraction of a second, not the import of torch.
"""

from __future__ import annotations

import argparse
import sys

from mgmae.commands import (add_common_flags, add_config_args, check_keys_apply, command, debugging,
                            one_line, show_progress, USER_ERRORS)


def _load(args):
    from mgmae.config import load_config

    return load_config(args.config, args.overrides)


def cmd_pretrain(args) -> int:
    check_keys_apply("pretrain", args.overrides)
    cfg = _load(args)  # before the engine is imported: a config error costs no torch import
    if args.resume:
        cfg.train.resume = args.resume
    from mgmae.engine.loop import Preempted
    from mgmae.engine.pretrain import pretrain

    try:
        pretrain(cfg, progress=show_progress(args.quiet), quiet=args.quiet)
    except Preempted as e:
        return e.code
    return 0


def cmd_config(args) -> int:
    from mgmae.config import list_recipes

    if args.keys:
        from mgmae.keydocs import format_keys

        print(format_keys(_load(args) if args.config or args.overrides else None))
        return 0
    if args.list:
        recipes = list_recipes()
        width = max(map(len, recipes), default=0)
        print("\n".join(f"{name:<{width}}  {text}".rstrip() for name, text in recipes.items()))
        return 0
    print(_load(args).to_yaml(), end="")
    return 0


# Commands implemented in their own modules take the rest of the command line as they are.
DELEGATED = {
    "convert": ("mgmae.convert", "convert a checkpoint: mgmae convert SRC DST --to mgmae|hf|official"),
    "reconstruct": ("mgmae.reconstruct", "input / visible cubes / reconstruction of clips by a pre-training "
                                         "checkpoint: mgmae reconstruct CKPT VIDEO_OR_LIST [-c CFG] "
                                         "[key=value ...] -o out/"),
    "masks": ("mgmae.masks", "draw masks of a video / dataset: mgmae masks VIDEO [-c CFG] [key=value ...] "
                             "-o out/"),
    "data": ("mgmae.data.check", "dataset tools: mgmae data check LIST [-c CFG] [data.root=R]"),
    "finetune": ("mgmae.engine.finetune",
                 "fine-tune a pre-trained encoder: mgmae finetune PRETRAINED|scratch [-c CFG] [key=value ...]"),
    "eval": ("mgmae.engine.evaluate", "multi-view evaluation: mgmae eval CHECKPOINT data.test_list=..."),
    "linprobe": ("mgmae.engine.linprobe", "linear probe on frozen features: mgmae linprobe PRETRAINED"),
    "probe": ("mgmae.engine.probe", "attentive (or linear) probe of a frozen encoder: mgmae probe "
                                    "PRETRAINED|scratch [--head attentive|linear] [-c CFG] [key=value ...]"),
    "extract": ("mgmae.engine.extract", "features per video: mgmae extract PRETRAINED VIDEOS -o feats/"),
    "weights": ("mgmae.weights", "published weights by name: mgmae weights [NAME] [--fetch]; every "
                                 "command takes a name, hf-hub:ORG/NAME or a URL for a checkpoint"),
    "study": ("mgmae.experiments.study", "masking study on synthetic data: mgmae study -c study_small [key=value ...] [--quick]"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgmae", description="Motion-guided masking for video masked autoencoding (MGMAE).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train a video MAE (no arguments: the built-in demo)")
    add_config_args(p)
    p.add_argument("--resume", help="checkpoint path, or 'auto' for the newest valid one in the run dir")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar and no epoch lines: the run's summary, warnings and errors")
    add_common_flags(p)
    p.set_defaults(func=cmd_pretrain)

    for name, (_, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)

    p = sub.add_parser("config", help="print the resolved config (--keys: every valid key; --list: "
                                      "the packaged recipes)")
    add_config_args(p)
    p.add_argument("--keys", action="store_true",
                   help="print every valid key with its default (with -c / key=value: its value "
                        "there) and what it means")
    p.add_argument("--list", action="store_true", help="print the packaged recipes (names for -c)")
    add_common_flags(p, checkpoints=False)
    p.set_defaults(func=cmd_config)
    return parser


def _check_early(name: str, argv: list[str]) -> int:
    """The config of ``mgmae NAME argv``, checked before the command's module (torch, timm, the
    engine) is imported (:mod:`mgmae.precheck`): 2 and the command's one-line error, or 0."""
    from mgmae.precheck import check_early

    try:
        check_early(name, argv)
    except USER_ERRORS as e:
        if debugging(argv):
            raise
        print(f"mgmae {'data check' if name == 'data' else name}: error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        rest = argv[1:]
        if argv[0] == "data":
            if not rest or rest[0] != "check":
                print("usage: mgmae data check LIST [-c CFG] [key=value ...] [--min-frames N] "
                      "[--json out.json]", file=sys.stderr)
                return 2
            rest = rest[1:]
        if _check_early(argv[0], rest):
            return 2
        module = importlib.import_module(DELEGATED[argv[0]][0])
        return int(module.cli_main(rest) or 0)
    parser = build_parser()
    sub = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
    if argv and argv[0] in sub:  # options and overrides in any order: --resume auto k=v, k=v --resume auto
        args = sub[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
    else:  # --help, a mistyped command: the usage
        args = parser.parse_args(argv)
    return command(args.command)(lambda _argv: args.func(args))(argv)


if __name__ == "__main__":
    raise SystemExit(main())
