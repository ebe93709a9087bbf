"""``mgmae study``: a reproducible small-scale study of masking strategies on the synthetic videos.

::

    mgmae study -c configs/study_small.yaml [key=value ...] [--quick] [--out docs/experiments.md]
                [--seeds N] [--jobs N] [--report-only]   (train.output_dir=DIR or --output-dir DIR: the cache)

For every strategy of the recipe (random, tube, motion-guided with ground-truth / DIS flow,
motion-guided with the official code's flow direction before the base frame) and every seed, the
same tiny ViT MAE is pre-trained for the same number of steps (:func:`mgmae.engine.pretrain.pretrain`).
Then every encoder, and a randomly initialised one per seed ("from scratch"), is evaluated on the
held-out synthetic videos by

* a linear probe on frozen, mean-pooled features (:func:`mgmae.engine.linprobe.train_probe`), on the
  motion-defined labels and on the appearance-defined labels (one feature pass serves both);
* short fine-tuning (:func:`mgmae.engine.finetune.finetune`) on each label set;

and every masker by

* the tracking rate (:func:`mgmae.masking.metrics.tracking_rate`, ground-truth flow): the share of
  visible cubes whose scene point stays under a visible cube in the other temporal slices, on
  moving objects and everywhere;
* the reconstruction loss: at the end of pre-training (mean of the last logged steps) and, on fixed
  held-out clips, of every pre-trained model under every strategy's masks (same model, different
  masks: which masks are harder to reconstruct).

The recipe may also list ablations (one key of a reference strategy changed at a time). Everything
is written to a Markdown report (tables with mean ± std over seeds, the command, the machine, wall
times, plots, mask GIFs).

Every run is cached under ``<output_dir>/<name>/`` and named by a hash of the settings that
decide its result, so an interrupted study continues where it stopped (pre-training runs resume
from their last checkpoint) and a changed setting gives new runs instead of stale numbers.
Seeds are ``0 .. N-1``, fixed before anything runs; every run of every seed is reported.
The same command started in several processes (cores, or machines sharing the cache directory)
splits the runs between them: each run is claimed before it is computed (see
:mod:`~mgmae.experiments.runs`), a process with nothing left but others' runs says so and exits,
and the last one to finish writes the report. ``--jobs N`` starts N - 1 such helper processes
itself, splits the cores between them, waits for them and writes the report.

The package splits the work by job: :mod:`~mgmae.experiments.plan` (the recipe),
:mod:`~mgmae.experiments.runs` (running and caching), :mod:`~mgmae.experiments.stats` (the paired
t-test), :mod:`~mgmae.experiments.report` (tables, plots, Markdown); this module is the command.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from mgmae.commands import add_common_flags, command
from mgmae.experiments.plan import load_plan
from mgmae.experiments.report import write_report
from mgmae.experiments.runs import (MissingRun, OthersRunning, Study, loadavg, machine_info,
                                    read_json, write_json)

__all__ = ["build_parser", "cli_main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mgmae study",
        description="Small-scale study of masking strategies (random, tube, motion-guided) on the "
                    "built-in synthetic videos: pre-training, linear probe and fine-tuning on motion "
                    "and appearance labels, tracking rate, reconstruction loss; writes a Markdown "
                    "report with plots. Runs are cached: re-running continues a study.")
    p.add_argument("-c", "--config", default="study_small", help="study recipe: a YAML path or a packaged name")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config keys for every run on top of the recipe's base (e.g. "
                        "train.num_workers=0); train.output_dir=DIR: where runs are cached")
    p.add_argument("--quick", action="store_true",
                   help="the recipe's reduced budget (its quick: block); ~13 min on 2 idle CPU cores")
    p.add_argument("--out", default="docs/experiments.md",
                   help="Markdown report (pictures go to images/ next to it)")
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1) instead of the recipe's")
    p.add_argument("--output-dir", help="where runs are cached (default: the recipe's study.output_dir); "
                                        "the same as train.output_dir=DIR")
    p.add_argument("--skip-ablations", action="store_true",
                   help="leave the recipe's ablations out (the main table alone; runs stay cached, so "
                        "a later run without this flag adds the ablations)")
    p.add_argument("--report-only", action="store_true",
                   help="write the report from cached runs; fail if a run is missing")
    p.add_argument("--dry-run", action="store_true", help="print the plan, which of its runs are recorded in the cache, and exit")
    p.add_argument("--quiet", action="store_true",
                   help="no line per run: the report's path, warnings and errors")
    p.add_argument("--jobs", type=int, default=1,
                   help="processes that share the runs (this one and N-1 started beside it, each "
                        "with cores/N for its threads and loader workers; theirs log to the cache's "
                        "logs/study-job-K.log); this one writes the report when all are done")
    add_common_flags(p, checkpoints=False)
    return p


def read_invocations(root: Path) -> list[dict]:
    """Every invocation of the study that ran here, oldest first: ``invocations/*.json`` (one
    file per process, rewritten as it goes) and the ``invocations.jsonl`` of older versions."""
    out = []
    legacy = root / "invocations.jsonl"
    if legacy.is_file():
        out += [json.loads(x) for x in legacy.read_text().splitlines() if x.strip()]
    out += [r for f in sorted((root / "invocations").glob("*.json")) if (r := read_json(f))]
    return out


def _command(argv: list[str]) -> str:
    return "mgmae study " + " ".join(shlex.quote(a) for a in argv)


@command("study")
def cli_main(argv: list[str]) -> int:
    """``mgmae study -c RECIPE [key=value ...] [--quick] [--out FILE] [--seeds N]``; returns the
    exit status."""
    args = build_parser().parse_intermixed_args(argv)
    plan = load_plan(args.config, quick=args.quick, seeds=args.seeds, output_dir=args.output_dir,
                     overrides=args.overrides)
    if args.skip_ablations:
        plan.skipped_ablations = [a.title for a in plan.ablations] or plan.skipped_ablations
        plan.ablations = []
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    helper = os.environ.get(_HELPER_ENV) is not None  # started by a --jobs N parent
    study = Study(plan, jobs=args.jobs, **({"log": lambda *a, **k: None} if args.quiet else {}))
    if args.dry_run:  # the plan, and which of its runs the cache holds
        runs = study.encoder_runs()
        tasks = study.tasks()
        done = [study.recorded(key) for _, key in tasks]
        print(f"[study] {plan.name} ({plan.mode}): {len(runs)} pre-training runs, "
              f"{len(tasks)} tasks in all, {sum(done)} recorded; runs cached in {study.root}")
        for (what, key), ok in zip(tasks, done):  # x: recorded, ~: claimed by a running process
            mark = "x" if ok else "~" if (study.results / f"{key}.lock").is_file() else " "
            print(f"  [{mark}] {what:<60} {key}")
        return 0
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load0 = loadavg()
    t0 = time.time()
    machine = machine_info()
    command = _command([a for a in argv if a != "--report-only"])
    if args.report_only:
        study.cache_only = True
        study.log = lambda *a, **k: None
    inv_dir = study.root / "invocations"
    inv_path = inv_dir / f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{os.getpid()}.json"

    def record(interrupted: bool) -> None:  # wall time of every invocation that computed something
        if args.report_only:
            return
        now = time.time()
        inv = {"started": started, "command": command, "mode": plan.mode, "t_start": round(t0, 1),
               "t_end": round(now, 1), "wall_seconds": round(now - t0, 1),
               "computed_seconds": round(study.computed_seconds, 1), "load_start": load0,
               "load_end": loadavg(), "threads": study.threads(), "interrupted": interrupted,
               "pid": os.getpid(), "machine": machine}
        write_json(inv_path, inv)

    # rewritten after every computed run, so a killed invocation still counts up to its last run
    study.on_computed = lambda: record(True)

    def on_term(signum, frame):  # `kill PID`: record the time spent, then stop (runs stay cached)
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, on_term)
    helpers = [] if helper or args.report_only else _start_helpers(argv, args.jobs, study.root)
    try:
        try:
            records = study.run()
        except OthersRunning as e:
            if not helpers:
                raise
            print(f"[study] waiting for the {len(helpers)} helper process(es): {e}", flush=True)
            _wait(helpers)  # then their runs are cached (or, if one died, its locks are stale)
            study.done, study.log = 0, (lambda *a, **k: None)
            records = study.run()
    except MissingRun as e:
        print(f"mgmae study: error: {e}", file=sys.stderr)
        return 1
    except OthersRunning as e:  # runs claimed by processes started elsewhere
        record(False)
        print(f"[study] done here ({(time.time() - t0) / 60:.1f} min); {e}")
        return 0
    except (KeyboardInterrupt, SystemExit):
        _stop(helpers)
        record(True)
        print("[study] interrupted; finished runs are cached: run the same command to continue",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, old_term)
    failed = _wait(helpers)  # (normally done: nothing was left for them)
    if helper:  # the parent writes the report
        record(False)
        return 0
    wall = time.time() - t0
    record(False)
    invocations = read_invocations(study.root)
    out = write_report(study, records, Path(args.out), command=command, started=started,
                       machine=machine, invocations=invocations)
    write_json(study.root / "records.json", {k: v for k, v in records.items()})
    print(f"[study] wrote {out} ({wall / 60:.1f} min); runs in {study.root}")
    if failed:  # (their runs were taken over by this process: the report is complete)
        print(f"[study] warning: {failed} helper process(es) failed; see {study.root / 'logs'}/"
              "study-job-*.log", file=sys.stderr)
    return 0


_HELPER_ENV = "MGMAE_STUDY_HELPER"


def _start_helpers(argv: list[str], jobs: int, root: Path) -> list:
    """``jobs - 1`` copies of this command (same arguments: they take the runs this process has
    not claimed), logging to ``<root>/logs/study-job-K.log``."""
    import subprocess

    procs = []
    (root / "logs").mkdir(parents=True, exist_ok=True)
    for k in range(1, jobs):
        env = dict(os.environ, **{_HELPER_ENV: str(k)})
        log = (root / "logs" / f"study-job-{k}.log").open("a")
        procs.append(subprocess.Popen([sys.executable, "-m", "mgmae", "study", *argv], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        log.close()
        print(f"[study] helper {k}: pid {procs[-1].pid}, log {root / 'logs' / f'study-job-{k}.log'}")
        time.sleep(5)  # (so that each claims different runs from the start)
    return procs


def _wait(procs: list) -> int:
    """Wait for the helper processes; returns how many failed."""
    return sum(p.wait() != 0 for p in procs)


def _stop(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()  # they record their time and stop; finished runs stay cached
    for p in procs:
        try:
            p.wait(timeout=60)
        except Exception:  # noqa: BLE001
            p.kill()
