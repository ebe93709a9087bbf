"""``mgmae finetune CK --compare-scratch [--seeds N]``: fine-tuning from a checkpoint vs from scratch.

The pair (pre-trained, random initialisation with the checkpoint's architecture) is fine-tuned
with the same config and seed, for ``N`` seeds in turn; the verdict is the paired t-test of the
per-seed differences of the best validation top-1 (:func:`mgmae.experiments.stats.paired_ttest`,
the test of ``mgmae study`` too), and the same test at every epoch that all runs validated.
With one seed there is no test (see :mod:`mgmae.experiments.stats`).
"""

from __future__ import annotations

import copy
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from mgmae.config import Config
from mgmae.data import uses_synthetic
from mgmae.engine.distributed import env_info
from mgmae.engine.finetune import FinetuneResult, finetune
from mgmae.experiments.stats import PairedTest, mean_std, paired_ttest
from mgmae.models.build import SCRATCH, build_encoder, classifier_name, sync_model_config

__all__ = ["compare_probes", "compare_scratch", "comparison_table"]


def compare_scratch(cfg: Config, pretrained: str | Path, *, seeds: int = 1,
                    progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``pretrained`` and, with the same config and seed, a randomly initialised model;
    with ``seeds`` > 1, the pair again for ``train.seed + 1``, ... (a new head initialisation,
    data order and augmentation each time; the videos stay the same). Returns
    ``{"pretrained": [FinetuneResult per seed], "scratch": [...], "seeds": [...], "table": str,
    "summary": path}``; ``<output_dir>/<run name>-compare.json`` holds the numbers."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    base = cfg.train.run_name or f"cmp-{classifier_name(cfg)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    scratch_cfg = copy.deepcopy(cfg)  # the pre-trained model's architecture (size, positions)
    sync_model_config(scratch_cfg, build_encoder(pretrained, cfg))  # read once, not per seed
    seed_list = [cfg.train.seed + i for i in range(seeds)]
    results: dict[str, list[FinetuneResult]] = {"pretrained": [], "scratch": []}
    for seed in seed_list:  # pairs in turn: a run cut short still has complete pairs
        for kind, src, kind_cfg in (("pretrained", pretrained, cfg), ("scratch", SCRATCH, scratch_cfg)):
            c = copy.deepcopy(kind_cfg)
            c.train.seed = seed
            c.train.run_name = f"{base}-{kind}" + (f"-s{seed}" if seeds > 1 else "")
            print(f"[mgmae] ===== {kind}{f' (seed {seed})' if seeds > 1 else ''}: {src} =====")
            results[kind].append(finetune(c, src, progress=progress))
    table, stats = comparison_table(cfg, pretrained, seed_list, results)
    summary = Path(cfg.train.output_dir) / f"{base}-compare.json"
    if env_info().is_main:
        summary.write_text(json.dumps({"seeds": seed_list,
                                       "pretrained": [r.to_dict() for r in results["pretrained"]],
                                       "scratch": [r.to_dict() for r in results["scratch"]],
                                       **stats, "table": table}, indent=1) + "\n")
    return {**results, "seeds": seed_list, "table": table, "summary": str(summary)}


def comparison_table(cfg: Config, pretrained, seeds: list[int],
                     results: dict[str, list[FinetuneResult]]) -> tuple[str, dict[str, Any]]:
    """The printed verdict of :func:`compare_scratch` and its numbers."""
    rows = []
    for i, seed in enumerate(seeds):
        for kind in ("pretrained", "scratch"):
            r = results[kind][i]
            test = r.test or {}
            tag = f"seed {seed} " if len(seeds) > 1 else ""
            rows.append(f"  {tag}{kind:<10} best val top-1 {_fmt(r.best_acc1)} (epoch {r.best_epoch})   "
                        f"test top-1 {_fmt(test.get('top1'))}  top-5 {_fmt(test.get('top5'))}   "
                        f"{r.epochs} epochs, {r.seconds / 60:.1f} min")
    acc = {k: [r.best_acc1 or 0.0 for r in v] for k, v in results.items()}
    test = results["scratch"][0].test or {}
    n, K = test.get("num_videos") or 0, test.get("num_classes") or 0
    resolution = 100 / n if n else 0.0  # one validation video
    best = _paired(acc["pretrained"], acc["scratch"], resolution)
    diff, tt = best["difference"], best["test"]
    if len(seeds) > 1:
        wins = sum(p > s for p, s in zip(acc["pretrained"], acc["scratch"]))
        rows.append(f"  mean over seeds {', '.join(map(str, seeds))}: pretrained {best['pretrained']:.2f}%, "
                    f"scratch {best['scratch']:.2f}%; pre-trained ahead with {wins} of {len(seeds)} seeds")
    verdict = "pre-trained beats scratch" if diff > 0 else "pre-trained does NOT beat scratch"
    chance = f"; chance level {100 / K:.1f}%" if K else ""
    label = cfg.data.synthetic_label if uses_synthetic(cfg) else "list"
    by_epoch = _by_epoch(results, resolution)
    table = "\n".join([f"[mgmae] fine-tuning from {pretrained} vs from scratch ({label} labels):"]
                      + rows + _by_epoch_rows(by_epoch, len(seeds))
                      + [f"  -> {verdict}: {diff:+.2f} points of val top-1"
                         f"{' (mean over seeds)' if len(seeds) > 1 else ''}; {_describe(tt, n)}{chance}"]
                      + _by_epoch_verdict(by_epoch))
    stats = {"best_val_acc1": acc, "difference_best_val_acc1": diff,
             "paired_ttest": tt.to_dict() if tt else None,
             "significant": tt.significant if tt else None, "by_epoch": by_epoch}
    return table, stats


def _describe(tt: PairedTest | None, n_val: int) -> str:
    if tt is not None:
        return tt.describe()
    return ("one seed: no significance test (the spread over seeds is unknown; use --seeds 3 or "
            "more)" + (f"; the validation set has {n_val} videos" if n_val else ""))


def _paired(pre: list[float], scratch: list[float], resolution: float) -> dict[str, Any]:
    """Accuracies (%) of pre-trained and scratch runs paired by seed: their means, the mean
    difference and the paired t-test (None with one seed)."""
    d = [a - b for a, b in zip(pre, scratch)]
    return {"pretrained": mean_std(pre)[0], "scratch": mean_std(scratch)[0],
            "difference": mean_std(d)[0], "test": paired_ttest(d, resolution=resolution)}


def _by_epoch(results: dict[str, list[FinetuneResult]], resolution: float) -> list[dict[str, Any]]:
    """Validation top-1 at equal epochs: for every epoch at which all runs were validated, the
    means over seeds, the mean paired difference and its paired t-test (:func:`_paired`)."""
    curves = {k: [{h["epoch"]: h["val_acc1"] for h in r.history if h.get("val_acc1") is not None}
                  for r in v] for k, v in results.items()}
    common = set.intersection(*(set(c) for v in curves.values() for c in v)) if curves["scratch"] else set()
    out = []
    for e in sorted(common):
        st = _paired([c[e] for c in curves["pretrained"]], [c[e] for c in curves["scratch"]],
                     resolution)
        tt = st["test"]
        out.append({"epoch": e, "pretrained": st["pretrained"], "scratch": st["scratch"],
                    "difference": st["difference"], "t": tt.t if tt else None,
                    "df": tt.df if tt else None, "p": tt.p if tt else None,
                    "significant": tt.significant if tt else None})
    return out


def _by_epoch_rows(by_epoch: list[dict[str, Any]], n_seeds: int) -> list[str]:
    """The val top-1 curves side by side (means over seeds), ``*`` where the paired t-test is
    significant."""
    if not by_epoch:
        return []
    w = 7
    star = "; * significant (paired t-test, 5%)" if n_seeds > 1 else " (one seed: no test)"
    return [f"  val top-1 at equal epochs{f' (mean over {n_seeds} seeds)' if n_seeds > 1 else ''}{star}:",
            "    epoch      " + "".join(f"{r['epoch']:>{w}d}" for r in by_epoch),
            "    pretrained " + "".join(f"{r['pretrained']:>{w}.1f}" for r in by_epoch),
            "    scratch    " + "".join(f"{r['scratch']:>{w}.1f}" for r in by_epoch),
            "    difference " + "".join(f"{r['difference']:>+{w - 1}.1f}{'*' if r['significant'] else ' '}"
                                        for r in by_epoch).rstrip()]


def _by_epoch_verdict(by_epoch: list[dict[str, Any]]) -> list[str]:
    if not by_epoch or by_epoch[0]["significant"] is None:
        return []
    ahead = [r["epoch"] for r in by_epoch if r["significant"] and r["difference"] > 0]
    behind = [r["epoch"] for r in by_epoch if r["significant"] and r["difference"] < 0]
    say = lambda es: ", ".join(map(str, es)) or "none"  # noqa: E731
    return [f"  -> at equal epochs, pre-trained ahead (paired t-test, 5%) at epochs {say(ahead)}; "
            f"behind at epochs {say(behind)} (of {len(by_epoch)} evaluated)"]


def _fmt(v) -> str:
    return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.2f}%"


def compare_probes(cfg: Config, pretrained: str | Path, *, seeds: int = 1, scratch: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """``mgmae probe CK [--seeds N] [--compare-scratch]``: the probe ``cfg.probe.head`` of
    ``pretrained`` for ``train.seed``, ``+1``, ... (a new head initialisation and data order
    each time) and, with ``scratch``, of a random encoder of the same architecture with the same
    seed; the paired t-test of the per-seed val top-1 differences. Returns the results and the
    table; ``<output_dir>/<run name>-probe.json`` holds the numbers."""
    from mgmae.engine.probe import ProbeResult, probe

    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    head = cfg.probe.head
    base = cfg.train.run_name or f"probe-{head}-{classifier_name(cfg)}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    kinds = [("pretrained", pretrained, cfg)]
    if scratch:
        scratch_cfg = copy.deepcopy(cfg)
        sync_model_config(scratch_cfg, build_encoder(pretrained, cfg))
        kinds.append(("scratch", SCRATCH, scratch_cfg))
    seed_list = [cfg.train.seed + i for i in range(seeds)]
    results: dict[str, list[ProbeResult]] = {k: [] for k, _, _ in kinds}
    for seed in seed_list:
        for kind, src, kind_cfg in kinds:
            c = copy.deepcopy(kind_cfg)
            c.train.seed = seed
            c.train.run_name = f"{base}-{kind}-s{seed}"
            print(f"[mgmae] ===== {head} probe, {kind} (seed {seed}): {src} =====")
            results[kind].append(probe(c, src, progress=progress))
    if results["pretrained"][0] is None:  # a torchrun rank other than 0: rank 0 reports
        return {**results, "seeds": seed_list, "table": "", "summary": None}
    acc = {k: [r.val_acc1 if r.val_acc1 is not None else r.train_acc1 for r in v] for k, v in results.items()}
    which = "val" if results["pretrained"][0].val_acc1 is not None else "train"
    rows = [f"[mgmae] {head} probe of {pretrained}, {which} top-1 over seeds {', '.join(map(str, seed_list))}:"]
    stats: dict[str, Any] = {"seeds": seed_list, "head": head, "acc1": acc}
    for kind in results:
        m, s, n = mean_std(acc[kind])
        rows.append(f"  {kind:<10} " + "  ".join(f"{a:6.2f}%" for a in acc[kind])
                    + (f"   mean {m:.2f} +/- {s:.2f}" if n > 1 else ""))
        stats[f"{kind}_mean"], stats[f"{kind}_std"] = m, s
    if scratch:
        n_val = results["pretrained"][0].num_val or results["pretrained"][0].num_train
        best = _paired(acc["pretrained"], acc["scratch"], 100 / n_val if n_val else 0.0)
        stats.update(difference=best["difference"],
                     paired_ttest=best["test"].to_dict() if best["test"] else None)
        rows.append(f"  -> pre-trained {'beats' if best['difference'] > 0 else 'does NOT beat'} scratch: "
                    f"{best['difference']:+.2f} points; {_describe(best['test'], n_val)}")
    table = "\n".join(rows)
    summary = Path(cfg.train.output_dir) / f"{base}-probe.json"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(json.dumps({**stats, **{k: [r.to_dict() for r in v] for k, v in results.items()},
                                   "table": table}, indent=1) + "\n")
    return {**results, "seeds": seed_list, "table": table, "summary": str(summary)}
