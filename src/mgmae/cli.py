"""The ``mgmae`` command line: ``mgmae pretrain|masks|data|convert|config ...``."""

from __future__ import annotations

import argparse
import sys


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="YAML recipe (e.g. configs/pretrain_vit_base_ssv2.yaml)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. train.epochs=10")


def _load(args):
    from mgmae.config import load_config

    return load_config(args.config, args.overrides)


def cmd_pretrain(args) -> int:
    from mgmae.engine.pretrain import pretrain

    cfg = _load(args)
    if args.resume:
        cfg.train.resume = args.resume
    pretrain(cfg)
    return 0


def cmd_config(args) -> int:
    from mgmae.config import valid_keys

    if args.keys:
        print("\n".join(valid_keys()))
        return 0
    print(_load(args).to_yaml(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgmae", description="Motion-guided masking for video masked autoencoding (MGMAE).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="pre-train a video MAE (no arguments: the built-in demo)")
    _add_config_args(p)
    p.add_argument("--resume", help="checkpoint path, or 'auto' for the newest valid one in the run dir")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("config", help="print the resolved config (or --keys: every valid key)")
    _add_config_args(p)
    p.add_argument("--keys", action="store_true")
    p.set_defaults(func=cmd_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (KeyError, ValueError, FileNotFoundError) as e:
        msg = e.args[0] if e.args else str(e)
        print(f"mgmae {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
