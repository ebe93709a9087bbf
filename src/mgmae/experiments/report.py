"""The report of ``mgmae study``: tables, plots and the Markdown page, from the runs' records.

Statements in the report follow from the numbers: paired differences are judged by the paired
t-test of :mod:`mgmae.experiments.stats`; what is compared is the plan's (``study.reference``,
``study.comparisons``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgmae.config import Config
from mgmae.experiments.plan import CHANCE
from mgmae.experiments.runs import Study
from mgmae.experiments.stats import mean_std, verdict
from mgmae.models import create_model, parse_name
from mgmae.models.build import SCRATCH
from mgmae.models.mae import denormalize
from mgmae.viz import darken, mask_to_pixels, save_panels, to_uint8

__all__ = ["Row", "collect_rows", "kinds_of", "write_plots", "write_report"]

# the downstream evaluations: (kind, name, short column name)
KINDS = (("lp", "linear probe", "LP"), ("ap", "attentive probe", "AP"), ("ft", "fine-tuning", "FT"))
KIND_NAMES = {k: name for k, name, _ in KINDS}


def kinds_of(records: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The evaluations a study's records hold (the attentive probe only where it ran)."""
    return [k for k in KINDS if k[0] != "ap" or records.get("attentive")]


def _fmt(values: list[float], digits: int = 1, scale: float = 1.0) -> str:
    m, s, n = mean_std([None if x is None else x * scale for x in values])
    if n == 0:
        return "–"
    if n == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"




@dataclass
class Row:
    name: str
    label: str
    loss_end: list[float]
    track_moving: float | None
    track_all: float | None
    lp: dict[str, list[float]]
    ft: dict[str, list[float]]
    seeds: list[int]
    pretrain_seconds: list[float]
    mask_ms: float | None = None
    ap: dict[str, list[float]] = field(default_factory=dict)  # attentive probe (studies that ran it)

    def acc(self, kind: str) -> dict[str, list[float]]:
        """Accuracies per label of ``kind``: lp (linear probe), ap (attentive probe), ft."""
        return {"lp": self.lp, "ap": self.ap, "ft": self.ft}[kind]


def collect_rows(study: Study, records: dict[str, Any]) -> tuple[list[Row], dict[str, list[Row]]]:
    """Main rows (scratch first, then strategies) and ablation rows per group (reference first)."""
    p = study.plan
    lp = {r["encoder"]: r for r in records["linprobe"]}
    ap = {r["encoder"]: r for r in records.get("attentive", [])}
    ft = {(r["encoder"], r["label"]): r for r in records["finetune"]}

    def row(name, label, pts, mask_item, seeds):
        encs = [r["key"] for r in pts] if pts is not None else [f"{SCRATCH}-s{s}" for s in seeds]
        tm = ta = None
        ms = None
        if mask_item is not None:
            a, b = mask_item["tracking_moving"]
            tm = a / b if b else None
            a, b = mask_item["tracking_all"]
            ta = a / b if b else None
            ms = mask_item.get("ms_per_clip")
        return Row(name, label, [r["loss_end"] for r in pts] if pts else [], tm, ta,
                   {lab: [lp[e][lab]["acc1"] for e in encs if e in lp] for lab in p.labels},
                   {lab: [ft[(e, lab)]["acc1"] for e in encs if (e, lab) in ft] for lab in p.labels},
                   list(seeds), [r["seconds"] for r in pts] if pts else [], ms,
                   {lab: [ap[e][lab]["acc1"] for e in encs if e in ap] for lab in p.labels})

    pts = records["pretrain"]
    rows = [row(SCRATCH, "from scratch (no pre-training)", None, None, p.seeds)]
    for s in p.strategies:
        sel = [r for r in pts if r["strategy"] == s.name and r["ablation"] is None]
        rows.append(row(s.name, s.label, sel, study._mask_items.get(s.name), [r["seed"] for r in sel]))
    groups: dict[str, list[Row]] = {}
    if p.ablations:
        ref = p.strategy(p.ablation_reference)
        ref_pts = [r for r in pts if r["strategy"] == ref.name and r["ablation"] is None
                   and r["seed"] in p.ablation_seeds]
        for a in p.ablations:
            rs = [row(ref.name, f"{a.reference} (reference: {ref.label})", ref_pts,
                      study._mask_items.get(ref.name), p.ablation_seeds)]
            for v in a.variants:
                sel = [r for r in pts if r["ablation"] == v.name]
                rs.append(row(f"{ref.name}+{v.name}", v.label, sel,
                              study._mask_items.get(study.masker_name(ref, v)), [r["seed"] for r in sel]))
            groups[a.title] = rs
    return rows, groups


def _paired(a: Row, b: Row, what: str, lab: str | None,
            resolution: float = 0.0) -> tuple[list[float], str]:
    """Per-seed differences a - b (same seed: same initialisation, data order and eval set)."""
    def by_seed(r: Row):
        vals = r.loss_end if what == "loss" else r.acc(what)[lab]
        return dict(zip(r.seeds, vals))

    da, db = by_seed(a), by_seed(b)
    diffs = [da[s] - db[s] for s in sorted(set(da) & set(db))]
    return diffs, verdict(diffs, 0.0 if what == "loss" else resolution)


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _example_clip(study: Study) -> int:
    """The tracking clip that shows motion-guided masking best: most (visible cube on the main
    object) x (object speed) under the best-tracking masker, summed over the slices."""
    p = study.plan
    best = max(p.strategies, key=lambda s: _rate(study._mask_items[s.name]["tracking_moving"]))
    item = study._mask_items[best.name]
    t, h, w = item["grid"]
    patch, tub = item["patch"], item["tubelet"]
    scores = []
    for k, mask in enumerate(item["masks"]):
        clip = item["videos"][k]
        main = len(clip.velocities) - 1  # the top layer
        centres = clip.layers[::tub, patch // 2::patch, patch // 2::patch][:t, :h, :w]  # [t, h, w]
        on_main = torch.from_numpy(centres == main) & ~mask.reshape(t, h, w)
        scores.append(float(on_main.sum()) * float(np.hypot(*clip.velocities[main])))
    return int(np.argmax(scores))


def _encoder_desc(cfg: Config) -> str:
    _, spec, patch = parse_name(cfg.model.name)
    return (f"encoder {spec.embed_dim}-d x {spec.depth} blocks, {_encoder_params(cfg) / 1e6:.2f}M "
            f"parameters; decoder depth {cfg.model.decoder_depth or spec.decoder_depth}; patch {patch}")


def _encoder_params(cfg: Config) -> int:
    enc = create_model(cfg.model.name.removeprefix("mae_"), num_frames=cfg.data.num_frames,
                       img_size=cfg.data.img_size, tubelet_size=cfg.model.tubelet_size)
    return sum(p.numel() for p in enc.parameters())


def _rate(hits_count) -> float:
    h, c = hits_count
    return h / c if c else 0.0


def write_plots(study: Study, records: dict[str, Any], rows: list[Row], img_dir: Path,
                prefix: str = "study_") -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = study.plan
    img_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    # reconstruction-loss curves: mean over seeds (thin: each seed); right: paired difference to
    # the plan's reference strategy
    curves: dict[str, dict[int, np.ndarray]] = {}
    for s in p.strategies:
        curves[s.name] = {r["seed"]: np.asarray(r["loss_curve"]) for r in records["pretrain"]
                          if r["strategy"] == s.name and r["ablation"] is None and r["loss_curve"]}
    ref = p.reference if p.reference is not None and curves.get(p.reference) else None
    fig, axes = plt.subplots(1, 2 if ref else 1, figsize=(13 if ref else 8, 4.5), dpi=110, squeeze=False)
    ax, axd = axes[0][0], (axes[0][1] if ref else None)

    def smooth(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = max(1, len(c) // 25)
        return np.arange(w, len(c) + 1), np.convolve(c, np.ones(w) / w, "valid")

    for i, s in enumerate(p.strategies):
        cs = curves[s.name]
        if not cs:
            continue
        n = min(len(c) for c in cs.values())
        arr = np.stack([c[:n] for c in cs.values()])
        col = colors[i % len(colors)]
        for c in arr:
            ax.plot(*smooth(c), color=col, lw=0.5, alpha=0.35)
        ax.plot(*smooth(arr.mean(0)), color=col, lw=2, label=f"{s.label} (n={len(cs)})")
        if axd is not None and s.name != ref:
            seeds = sorted(set(cs) & set(curves[ref]))
            if seeds:
                n2 = min(n, *(len(curves[ref][k]) for k in seeds))
                diff = np.stack([cs[k][:n2] - curves[ref][k][:n2] for k in seeds]).mean(0)
                axd.plot(*smooth(diff), color=col, lw=1.5, label=s.label)
    ax.set_yscale("log")
    ax.set_xlabel("pre-training step")
    ax.set_ylabel("reconstruction loss (moving mean, log scale)")
    ax.set_title("pre-training loss (thick: mean over seeds; thin: each seed)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if axd is not None:
        axd.axhline(0, color="black", lw=1)
        axd.set_xlabel("pre-training step")
        rl = p.strategy(ref).label
        axd.set_ylabel(f"loss minus {rl}'s (same seed), moving mean")
        axd.set_title(f"difference to {rl} masking (> 0: higher loss than {rl})", fontsize=10)
        axd.grid(alpha=0.3)
        axd.legend(fontsize=8)
    fig.tight_layout()
    files["loss"] = img_dir / f"{prefix}loss.png"
    fig.savefig(files["loss"])
    plt.close(fig)

    # accuracy bars
    kinds = kinds_of(records)
    panels = [(kind, lab) for kind, _, _ in kinds for lab in p.labels]
    fig, axes = plt.subplots(len(kinds), len(p.labels), figsize=(5.5 * len(p.labels), 3.75 * len(kinds)),
                             dpi=110, squeeze=False)
    for k, (kind, lab) in enumerate(panels):
        ax = axes[k // len(p.labels)][k % len(p.labels)]
        for j, r in enumerate(rows):
            vals = r.acc(kind)[lab]
            m, s, n = mean_std(vals)
            col = "lightgray" if r.name == SCRATCH else colors[(j - 1) % len(colors)]
            ax.bar(j, m if n else 0, yerr=s if n > 1 else None, color=col, capsize=3, alpha=0.85)
            ax.scatter([j] * len(vals), vals, s=10, color="black", zorder=3)
        ax.axhline(CHANCE[lab], color="red", lw=1, ls="--", label="chance")
        ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("held-out top-1 (%)")
        ax.set_title(f"{KIND_NAMES[kind]}: {lab} labels", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("downstream accuracy (bars: mean, whiskers: std over seeds, dots: seeds)", fontsize=10)
    fig.tight_layout()
    files["accuracy"] = img_dir / f"{prefix}accuracy.png"
    fig.savefig(files["accuracy"])
    plt.close(fig)

    # masks of one held-out clip per strategy: a GIF each (input | visible cubes) + one PNG

    i = p.example_clip
    if i is None:
        i = _example_clip(study)
    panels_rows = []
    inp = to_uint8(denormalize(study._mask_video(p.strategies[0].name)[i:i + 1])[0])
    panels_rows.append((f"input (held-out clip {i})", inp))
    for s in p.strategies:
        item = study._mask_items[s.name]
        grid, patch, tub = tuple(item["grid"]), item["patch"], item["tubelet"]
        pm = mask_to_pixels(item["masks"][i], grid, patch, tub).numpy()
        shown = darken(inp, pm, 0.2)
        panels_rows.append((s.label, shown))
        gif = img_dir / f"{prefix}masks_{s.name}.gif"
        tmp_png = img_dir / f".{prefix}masks_{s.name}.png"
        save_panels([("input", inp), (s.label, shown)], tmp_png, gif, frame_step=2, fps=4)
        tmp_png.unlink(missing_ok=True)
        files[f"gif_{s.name}"] = gif
    files["masks"] = img_dir / f"{prefix}masks.png"
    save_panels(panels_rows, files["masks"], None, frame_step=2)
    return files


def elapsed_seconds(invocations: list[dict[str, Any]]) -> float:
    """Wall time of the invocations: overlapping ones (processes that ran the study side by side)
    count once; records without start and end times (older versions) add their wall time."""
    spans = sorted((i["t_start"], i["t_end"]) for i in invocations if "t_start" in i and "t_end" in i)
    total = sum(i["wall_seconds"] for i in invocations if not ("t_start" in i and "t_end" in i))
    end = float("-inf")
    for a, b in spans:
        total += max(0.0, b - max(a, end))
        end = max(end, b)
    return total


def write_report(study: Study, records: dict[str, Any], out: Path, *, command: str,
                 started: str, machine: dict[str, Any], invocations: list[dict[str, Any]]) -> Path:
    """Write the Markdown report ``out`` and its pictures (``images/`` next to it).
    ``invocations``: the study runs that computed the cached results (wall time, load)."""
    p = study.plan
    rows, groups = collect_rows(study, records)
    img_dir = out.parent / "images"
    tag = out.stem.removeprefix("experiments").strip("_-")
    files = write_plots(study, records, rows, img_dir, f"{p.name}_{tag}_" if tag else f"{p.name}_")
    rel = lambda f: os.path.relpath(f, out.parent)  # noqa: E731
    cfg = p.config()
    ft_cfg = p.config(p.finetune_overrides)
    labs = p.labels
    by = {r.name: r for r in rows}

    L: list[str] = []
    L.append(f"# {p.title}")
    L.append("")
    if p.protocol:
        L.append("**Protocol**, fixed before the first run (the recipe's `study.protocol`):")
        L.append("")
        L.append(p.protocol)
        L.append("")
    L.append(f"*Generated by `mgmae study` ({p.mode} mode) on {started}. Do not edit by hand: re-run "
             f"the command below (cached runs are reused).*")
    L.append("")
    L.append("```bash\n" + command + "\n```")
    L.append("")
    cpu = machine
    L.append(f"**Machine:** {cpu['cpu']}, {cpu['cores']} cores (the study ran {records.get('threads', '?')} torch thread(s) "
             f"next to {cfg.train.num_workers} data-loader worker(s)), "
             f"{cpu['memory_gib']} GiB RAM, GPU: {cpu['gpu'] or 'none'}; torch {cpu['torch']}, "
             f"Python {cpu['python']}, {cpu['os']}.  ")
    pt_sec = sum(r["seconds"] for r in records["pretrain"])
    lp_sec = sum(r["seconds"] for r in records["linprobe"])
    ap_sec = sum(r["seconds"] for r in records.get("attentive", []))
    ft_sec = sum(r["seconds"] for r in records["finetune"])
    runs = [i for i in invocations if i.get("computed_seconds", 0) > 0]
    total = elapsed_seconds(runs)
    L.append(f"**Wall time:** {total / 60:.1f} min in {len(runs)} invocation(s) of the command "
             "(invocations that ran at the same time counted once); the "
             f"runs themselves took {pt_sec / 60:.1f} min pre-training, {lp_sec / 60:.1f} min linear "
             f"probes (feature extraction included), "
             + (f"{ap_sec / 60:.1f} min attentive probes (tokens included), " if ap_sec else "")
             + f"{ft_sec / 60:.1f} min fine-tuning (the rest: "
             f"masks, tracking, held-out losses, pictures).")
    L.append("")
    if runs:
        L.append(_table(["started", "command", "wall time", "new work", "load average at start → end"],
                        [[i["started"], f"`{i['command']}`", f"{i['wall_seconds'] / 60:.1f} min",
                          f"{i['computed_seconds'] / 60:.1f} min",
                          f"{i.get('load_start')} → {i.get('load_end')}"] for i in runs]))
        L.append("")
        L.append("Load average = runnable processes (1/5/15-minute means); above the core count other "
                 "processes shared the CPU during the study (this is a shared development machine) and "
                 "the wall times are inflated accordingly.")
        L.append("")
    L.append("## Setup")
    L.append("")
    L.append(_table(["what", "setting"], [
        ["data", f"built-in synthetic videos, {cfg.data.num_frames} frames x {cfg.data.img_size}x"
                 f"{cfg.data.img_size}; {cfg.data.synthetic_videos} training videos (seed "
                 f"{cfg.data.synthetic_seed}), {p.eval_videos} held-out videos (seed "
                 f"{cfg.data.synthetic_seed + 1})"],
        ["labels", "motion: direction x speed of the main object (8 classes, chance 12.5%); "
                   "appearance: its shape (4 classes, chance 25%)"],
        ["model", f"`{cfg.model.name}` ({_encoder_desc(cfg)}), tubelet {cfg.model.tubelet_size}, "
                  f"target {'per-patch normalised' if cfg.model.norm_pix_loss else 'raw'} pixels"],
        ["pre-training", f"{p.pretrain_steps} steps x {cfg.train.batch_size} clips, blr "
                         f"{cfg.train.blr:g}, warm-up {cfg.train.warmup_epochs:g} epoch(s), mask ratio "
                         f"{cfg.masking.mask_ratio} (unless the row says otherwise)"],
        ["linear probe", f"frozen encoder, mean-pooled features of the centre view, BatchNorm + "
                         f"linear, {cfg.finetune.linprobe_epochs} epochs AdamW lr "
                         f"{cfg.finetune.linprobe_lr:g} on the {cfg.data.synthetic_videos} training "
                         f"videos; top-1 on the {p.eval_videos} held-out videos"],
        *([["attentive probe", f"frozen encoder, all tokens of the centre view (no pooling): "
                               f"{cfg.probe.num_queries} learnable quer{'y' if cfg.probe.num_queries == 1 else 'ies'}, "
                               f"{cfg.probe.depth} cross-attention block(s), "
                               f"{cfg.probe.num_heads or 'as many as the encoder'} heads, LayerNorm + linear; "
                               f"{cfg.probe.epochs} epochs AdamW lr {cfg.probe.lr:g}, weight decay "
                               f"{cfg.probe.weight_decay:g}, batch {cfg.probe.batch_size} "
                               f"(`mgmae probe`, docs/probe.md); the linear probe's videos"]]
          if records.get("attentive") else []),
        ["fine-tuning", f"{p.finetune_steps} steps x {ft_cfg.finetune.batch_size} clips, blr "
                        f"{ft_cfg.finetune.blr:g}, layer decay {ft_cfg.finetune.layer_decay}, drop path "
                        f"{ft_cfg.finetune.drop_path}, label smoothing {ft_cfg.finetune.label_smoothing}; "
                        f"top-1 of the final model on the {p.eval_videos} held-out videos (no "
                        f"checkpoint selection)"],
        ["seeds", f"{', '.join(map(str, p.seeds))} (fixed in advance; every seed is reported). A seed "
                  f"sets the initialisation, data order, augmentation and masks of pre-training and "
                  f"fine-tuning, and the probe's initialisation"],
        ["tracking rate", f"{p.mask_clips} held-out clips, one mask each, ground-truth flow from the "
                          f"middle slice to every other slice (`mgmae.masking.metrics.tracking_rate`); "
                          f"'moving' = cubes whose centre is on an object (every object moves)"],
    ]))
    L.append("")
    L.append("Strategies (each is the base config plus these keys):")
    L.append("")
    for s in p.strategies:
        keys = ", ".join(f"`{k}={v}`" for k, v in s.overrides.items())
        L.append(f"- **{s.label}**: {keys}" + (f". {s.note}" if s.note else ""))
    L.append("")

    # main table
    L.append("## Results")
    L.append("")
    n_seeds = len(p.seeds)
    L.append(f"Mean ± standard deviation over {n_seeds} seed{'s' if n_seeds > 1 else ''}; "
             f"accuracies are held-out top-1 (%).")
    L.append("")
    header = ["strategy", "loss at end of pre-training", "tracking: moving", "tracking: all"]
    kinds = kinds_of(records)
    header += [f"{'fine-tune' if kind == 'ft' else name}: {lab}" for kind, name, _ in kinds for lab in labs]
    body = []
    for r in rows:
        body.append([r.label, _fmt(r.loss_end, 4) if r.loss_end else "–", _pct(r.track_moving),
                     _pct(r.track_all)] + [_fmt(r.acc(kind)[lab]) for kind, _, _ in kinds for lab in labs])
    L.append(_table(header, body))
    L.append("")
    L.append(f"Chance: motion 12.5%, appearance 25%. Loss: mean of the last {p.loss_tail} logged "
             f"training steps (each strategy's own masks). Tracking rate: one number per masker "
             f"(deterministic masks on the fixed clips, not per seed).")
    L.append("")
    L.append(f"![accuracy]({rel(files['accuracy'])})")
    L.append("")

    # paired differences
    pairs = []
    names = [s.name for s in p.strategies]
    for a, b in p.comparisons:
        if a in names and b in names:
            pairs.append((a, b))
    for s in p.strategies:
        pairs.append((s.name, SCRATCH))
    res = 100.0 / p.eval_videos
    if pairs:
        L.append("### Paired differences (same seed)")
        L.append("")
        L.append("Per-seed difference, first strategy minus second (a seed fixes the initialisation "
                 "and data order of both), mean ± std over seeds; in brackets the paired two-sided "
                 "t-test at 95%: 'higher'/'lower' when significant, else 'n.s.' (not distinguishable "
                 f"from noise). For accuracies the standard deviation is floored at one held-out video "
                 f"({100 / p.eval_videos:.2f} points), the metric's resolution.")
        L.append("")
        header = ["comparison", "loss at end"] + [f"{short} {lab}" for _, _, short in kinds for lab in labs]
        body = []
        for a, b in pairs:
            ra, rb = by[a], by[b]
            cells = [f"{ra.label} − {rb.label}"]
            if b == SCRATCH:
                cells.append("–")
            else:
                d, v = _paired(ra, rb, "loss", None)
                cells.append(f"{_fmt(d, 5)} ({v})")
            for kind, _, _ in kinds:
                for lab in labs:
                    d, v = _paired(ra, rb, kind, lab, res)
                    cells.append(f"{_fmt(d)} ({v})")
            body.append(cells)
        L.append(_table(header, body))
        L.append("")

    L += _equal_epochs(study, records, labs, pairs)

    # held-out reconstruction
    recon = [r for r in records["recon"]]
    if recon:
        L.append("### Reconstruction difficulty: every model under every strategy's masks")
        L.append("")
        L.append(f"Loss (raw-pixel MSE on the hidden cubes) on the {p.mask_clips} held-out clips; rows: "
                 f"the strategy a model was pre-trained with (mean over seeds), columns: the masks it "
                 f"is evaluated with (the same clips and masks for every model). Reading along a row "
                 f"compares masks with the model fixed.")
        L.append("")
        header = ["pre-trained with ↓ / masks →"] + [s.label for s in p.strategies]
        body = []
        pt_by_key = {r["key"]: r for r in records["pretrain"]}
        for s in p.strategies:
            cells = [s.label]
            for t in p.strategies:
                vals = [r["loss"].get(t.name) for r in recon
                        if pt_by_key[r["pretrain"]]["strategy"] == s.name
                        and pt_by_key[r["pretrain"]]["ablation"] is None]
                cells.append(_fmt([v for v in vals if v is not None], 4))
            body.append(cells)
        L.append(_table(header, body))
        L.append("")
    L.append(f"![loss curves]({rel(files['loss'])})")
    L.append("")

    # reading
    L.append("## Reading")
    L.append("")
    L.extend(_reading(study, rows, records))
    L.append("")

    # ablations
    if groups:
        L.append("## Ablations")
        L.append("")
        L.append(f"One key of **{p.strategy(p.ablation_reference).label}** changed at a time; "
                 f"{len(p.ablation_seeds)} seed{'s' if len(p.ablation_seeds) > 1 else ''} "
                 f"({', '.join(map(str, p.ablation_seeds))}); the reference row is the main run of the "
                 f"same seeds.")
        L.append("")
        header = ["ablation", "setting", "loss at end", "tracking: moving", "tracking: all"]
        header += [f"{short} {lab}" for _, _, short in kinds for lab in labs]
        body = []
        for title, rs in groups.items():
            for k, r in enumerate(rs):
                body.append([title if k == 0 else "", r.label, _fmt(r.loss_end, 4) if r.loss_end else "–",
                             _pct(r.track_moving), _pct(r.track_all)]
                            + [_fmt(r.acc(kind)[lab]) for kind, _, _ in kinds for lab in labs])
        L.append(_table(header, body))
        L.append("")
    elif p.skipped_ablations:  # the recipe has ablations, this invocation left them out
        L.append("## Ablations")
        L.append("")
        L.append(f"Not run here ({p.mode} mode{', --skip-ablations' if p.mode == 'full' else ''}); the "
                 f"recipe's full mode runs: {', '.join(p.skipped_ablations)}.")
        L.append("")

    # masks
    L.append("## Masks")
    L.append("")
    L.append("The same held-out clip under each strategy (hidden cubes darkened; every second frame; "
             "the clip is the one of the tracking set where the best-tracking strategy keeps most "
             "visible cubes on the main object, weighted by its speed). "
             "Animated, one per strategy: " + ", ".join(
                 f"[{s.label}]({rel(files['gif_' + s.name])})" for s in p.strategies) + ".")
    L.append("")
    L.append(f"![masks]({rel(files['masks'])})")
    L.append("")
    for s in p.strategies:
        L.append(f"![{s.label}]({rel(files['gif_' + s.name])})")
    L.append("")
    mrows = []
    for s in p.strategies:
        item = study._mask_items.get(s.name)
        if item:
            mrows.append([s.label, f"{item['ms_per_clip']:.0f}"])
    L.append("Masking cost on this machine (ms per clip, including rendering and augmentation of the "
             "clip, single process): " + "; ".join(f"{a} {b}" for a, b in mrows) + ".")
    L.append("")

    # per-seed details
    L.append("## Every run")
    L.append("")
    header = ["strategy", "seed", "loss at end", "pre-training s"] + \
        [f"{short} {lab}" for _, _, short in kinds for lab in labs]
    body = []
    all_rows = rows + [r for rs in groups.values() for r in rs[1:]]
    for r in all_rows:
        for k, seed in enumerate(r.seeds):
            body.append([r.label, str(seed), f"{r.loss_end[k]:.4f}" if r.loss_end else "–",
                         f"{r.pretrain_seconds[k]:.0f}" if r.pretrain_seconds else "–"]
                        + [f"{r.acc(kind)[lab][k]:.1f}" if k < len(r.acc(kind)[lab]) else "–"
                           for kind, _, _ in kinds for lab in labs])
    L.append(_table(header, body))
    L.append("")
    L.append("## Reproduce, continue, scale up")
    L.append("")
    L.append(f"Runs are cached in `{study.root}` (one folder per pre-training / fine-tuning run, "
             f"`results/*.json` per evaluation, `logs/` with each engine's console output); their names "
             f"carry a hash of the settings, so re-running the command skips finished runs, resumes an "
             f"interrupted pre-training from its last checkpoint, and recomputes only what a changed "
             f"setting affects. `--jobs N` shares the runs between N processes (or start the same "
             f"command several times, on machines that share the cache directory too). "
             f"`results/` and `invocations/` alone carry a study to another machine: a pre-trained "
             f"encoder whose probe, fine-tunings and reconstruction losses are all recorded is not "
             f"needed again, its weights may be gone. "
             f"`--seeds N` changes the number of seeds, `--quick` the reduced "
             f"budget of the recipe's `quick:` block, `--report-only` rewrites this page from the "
             f"cache.")
    others = sorted(f for f in out.parent.glob("experiments*.md") if f.resolve() != out.resolve())
    if others:
        L.append("")
        L.append("Other generated study reports: " + ", ".join(f"[{f.name}]({f.name})" for f in others) + ".")
    write_section(out, p.name, "\n".join(L) + "\n")
    return out


def write_section(out: Path, name: str, text: str) -> None:
    """Put one study's report into ``out`` between its markers, keeping every other study's
    section: a file may hold several studies (docs/experiments.md). The section replaces its own
    earlier version in place, or is appended; a new file holds just the section."""
    begin, end = f"<!-- mgmae study {name}: begin -->", f"<!-- mgmae study {name}: end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = out.read_text() if out.is_file() else ""
    i, j = old.find(begin), old.find(end)
    if i >= 0 and j > i:
        new = old[:i] + block + old[j + len(end):].removeprefix("\n")
    elif old.strip():
        new = old.rstrip("\n") + "\n\n" + block
    else:
        new = block
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(new)
    os.replace(tmp, out)


def _curves(study: Study, records: dict[str, Any], lab: str) -> dict[str, dict[int, dict[int, float]]]:
    """``strategy -> seed -> {epoch: validation top-1}`` of the fine-tuning runs on ``lab``."""
    p = study.plan
    ft = {(r["encoder"], r["label"]): r for r in records["finetune"]}
    encoders = {SCRATCH: {s: f"{SCRATCH}-s{s}" for s in p.seeds}}
    for s in p.strategies:
        encoders[s.name] = {r["seed"]: r["key"] for r in records["pretrain"]
                            if r["strategy"] == s.name and r["ablation"] is None}
    return {name: {seed: {c["epoch"]: c["acc1"] for c in ft[(e, lab)].get("curve") or []}
                   for seed, e in encs.items() if (e, lab) in ft}
            for name, encs in encoders.items()}


def _equal_epochs(study: Study, records: dict[str, Any], labs, pairs) -> list[str]:
    """Fine-tuning at equal epochs, as ``--compare-scratch`` reports it: validation top-1 (mean over
    seeds) at every epoch that every run validated, and the paired t-test of each comparison there
    and on the best validation top-1. Empty when the runs were not validated along the way
    (``finetune.eval_every`` beyond the run, or ``synthetic_val_videos: 0``)."""
    p = study.plan
    cfg = p.config(p.finetune_overrides)
    resolution = 100.0 / max(1, cfg.finetune.synthetic_val_videos)
    labels = {SCRATCH: "from scratch (no pre-training)", **{s.name: s.label for s in p.strategies}}
    L: list[str] = []
    for lab in labs:
        curves = _curves(study, records, lab)
        runs = [c for per_seed in curves.values() for c in per_seed.values()]
        if not runs or not all(runs):
            continue
        epochs = sorted(set.intersection(*(set(c) for c in runs)))
        if not epochs:
            continue
        if not L:
            L += ["### Fine-tuning at equal epochs", "",
                  f"Validation top-1 (%) on the {cfg.finetune.synthetic_val_videos} held-out videos the "
                  f"engine validates on (`finetune.eval_every`), mean over seeds at every epoch all runs "
                  f"validated; best = the best validation top-1 of each run. Paired differences: first "
                  f"minus second, same seed, with the paired two-sided t-test at 95% (std floored at "
                  f"one validation video, {resolution:.2f} points).", ""]
        header = [f"{lab} labels"] + [f"epoch {e}" for e in epochs] + ["best"]
        body = []
        for name, per_seed in curves.items():
            if per_seed:
                body.append([labels[name]] + [_fmt([c[e] for c in per_seed.values()]) for e in epochs]
                            + [_fmt([max(c.values()) for c in per_seed.values()])])
        L += [_table(header, body), ""]
        body = []
        for a, b in pairs:
            ca, cb = curves.get(a, {}), curves.get(b, {})
            seeds = sorted(set(ca) & set(cb))
            if not seeds:
                continue
            cells = [f"{labels[a]} − {labels[b]}"]
            for e in epochs + ["best"]:
                diffs = [(max(ca[s].values()) - max(cb[s].values())) if e == "best"
                         else ca[s][e] - cb[s][e] for s in seeds]
                cells.append(f"{_fmt(diffs)} ({verdict(diffs, resolution)})")
            body.append(cells)
        if body:
            L += [_table(["comparison"] + header[1:], body), ""]
    return L


def _reading(study: Study, rows: list[Row], records) -> list[str]:
    """Statements that follow from the numbers (no hand-written conclusions)."""
    p = study.plan
    res = 100.0 / p.eval_videos
    by = {r.name: r for r in rows}
    ref = p.reference if p.reference in by else None  # the strategy the others are compared with
    rl = by[ref].label if ref else None
    out = []
    n = len(p.seeds)
    if n < 3:
        out.append(f"- Only {n} seed{'s' if n > 1 else ''}: differences below cannot be told from noise "
                   f"reliably; run with `--seeds 3` or more.")
    # tracking
    tr = [(r.label, r.track_moving, r.track_all) for r in rows if r.track_moving is not None]
    if tr:
        out.append("- **Tracking.** Share of visible cubes on moving objects whose scene point is "
                   "under a visible cube in the other slices: " + "; ".join(f"{a} {_pct(b)}" for a, b, _ in tr)
                   + ". Everywhere (mostly static or slowly moving background): "
                   + "; ".join(f"{a} {_pct(c)}" for a, _, c in tr) + ".")
        if "motion_guided_official" in by and "motion_guided_gt" in by:
            o, g = by["motion_guided_official"], by["motion_guided_gt"]
            if o.track_moving is not None and g.track_moving is not None:
                out.append(f"  The official flow direction before the base frame (same GT flow) tracks "
                           f"{_pct(o.track_moving)} vs {_pct(g.track_moving)} for ours: the mask moves "
                           f"against the motion on the slices before the base frame.")
    # loss
    if ref and by[ref].loss_end:
        parts = []
        for s in p.strategies:
            if s.name == ref or not by[s.name].loss_end:
                continue
            d, v = _paired(by[s.name], by[ref], "loss", None)
            m, sd, k = mean_std(d)
            parts.append(f"{s.label} {m:+.5f} ± {sd:.5f} ({v})")
        out.append(f"- **Reconstruction loss at the end of pre-training**, difference to {rl} masking "
                   "(same seed): " + "; ".join(parts) + ". A higher training loss under a strategy's "
                   "own masks is what the paper means by a harder task; the held-out matrix above "
                   "separates the masks' difficulty from the model (read along a row).")
        recon = records.get("recon") or []
        pt_by_key = {r["key"]: r for r in records["pretrain"]}
        ref_rows = [r["loss"] for r in recon if pt_by_key[r["pretrain"]]["strategy"] == ref
                    and pt_by_key[r["pretrain"]]["ablation"] is None]
        if ref_rows and all(ref in x for x in ref_rows):
            comps = []
            for s in p.strategies:
                d = [x[s.name] - x[ref] for x in ref_rows if s.name in x] if s.name != ref else []
                if d:
                    comps.append(f"{s.label} masks {mean_std(d)[0]:+.5f}")
            if comps:
                out.append(f"  With the {rl}-pre-trained models fixed, held-out loss relative to {rl} "
                           "masks: " + "; ".join(comps) + " (positive = harder).")
    # downstream
    for key in [a for a, b in p.comparisons if b == ref]:
        if key in by:
            parts = []
            wins = 0
            for kind, name, _ in kinds_of(records):
                for lab in p.labels:
                    d, v = _paired(by[key], by[ref], kind, lab, res)
                    m, sd, k = mean_std(d)
                    if k == 0:
                        continue
                    parts.append(f"{name} {lab} {m:+.1f} ± {sd:.1f} points ({v})")
                    wins += v.startswith("higher")
            if parts:
                out.append(f"- **{by[key].label} vs {rl}**, downstream (paired): " + "; ".join(parts) + ".")
                if wins == 0:
                    out.append(f"  At this scale {by[key].label} does **not** beat {rl} masking "
                               f"significantly on any downstream metric.")
    flat = []
    for kind, name, _ in kinds_of(records):
        for lab in p.labels:
            means = [mean_std(r.acc(kind)[lab])[0] for r in rows]
            means = [m for m in means if math.isfinite(m)]
            if means and max(means) <= CHANCE[lab] + 2 * res:
                flat.append(f"{name} on {lab} labels (best row {max(means):.1f}%, chance {CHANCE[lab]:.1f}%)")
    if flat:
        out.append("- **At chance.** No row, pre-trained or not, is more than two held-out videos above "
                   "chance for: " + "; ".join(flat) + ". These columns carry no evidence for or "
                   "against any masking strategy.")
    # pre-training transfers: fine-tuning from it beats fine-tuning from random weights
    # significantly on some labels (the downstream task; a linear-probe win alone, next to
    # fine-tuning at chance, is not transfer)
    transfers = False
    if ref:
        parts = []
        for kind, name, _ in kinds_of(records):
            for lab in p.labels:
                d, v = _paired(by[ref], by[SCRATCH], kind, lab, res)
                m, sd, k = mean_std(d)
                if k:
                    parts.append(f"{name} {lab} {m:+.1f} ± {sd:.1f} ({v})")
                    transfers |= kind == "ft" and v.startswith("higher")
        out.append(f"- **Does pre-training help at all here?** {rl[:1].upper() + rl[1:]} masking vs no "
                   "pre-training: "
                   + "; ".join(parts) + ". " + (
                       "Yes: at this budget pre-training transfers, so differences between masking "
                       "strategies can show." if transfers else
                       "Fine-tuning from the pre-trained encoder does not beat fine-tuning from random "
                       "weights significantly: at this budget differences between masking strategies "
                       "cannot show downstream."))
    cfg0 = study.plan.config()
    if transfers:
        out.append(f"- **Scope.** A {_encoder_params(cfg0) / 1e6:.1f}M-parameter encoder, "
                   f"{p.pretrain_steps} pre-training steps of {cfg0.train.batch_size} clips on "
                   f"{cfg0.data.synthetic_videos} synthetic videos whose labels are defined by motion "
                   "or appearance: the result speaks for masking strategies on these videos at this "
                   "budget; the paper's claim (ViT-B on Something-Something V2 / Kinetics-400) needs a "
                   "GPU run.")
        return out
    out.append("- **What it would take.** The paper's gains over VideoMAE (about one point of top-1) "
               "come from ViT-S/B/L models pre-trained for hundreds of epochs on Something-Something V2 "
               "(169k real videos) or Kinetics-400 (240k), fine-tuned for tens of epochs with the full "
               f"recipe. Here a {_encoder_params(study.plan.config()) / 1e6:.1f}M-parameter encoder "
               f"sees {p.pretrain_steps} steps of {study.plan.config().train.batch_size} clips on "
               f"{study.plan.config().data.synthetic_videos} synthetic videos. A fair test at small "
               "scale would need: pre-training long enough for the loss to flatten under every "
               "strategy (thousands of steps: the demo, the same model and budget as here, does not "
               "beat even spatial smoothing of the visible cubes in the end-of-run check of "
               "`mgmae pretrain`), the "
               "separable position table (`model.pos_embed=sincos_3d`) with a higher learning rate, "
               "which in 2000 steps at mask ratio 0.75 beat smoothing clearly (0.68 of its loss) where "
               "VideoMAE's 1D table barely starts (docs/notes/2026-11-25-mae-vs-spatial-smoothing.md), "
               "more seeds (differences of ~1 point need standard "
               "errors well below 1 point), a larger encoder (ViT-S/tiny), per-patch normalised "
               "targets (the paper's; with raw pixels the model can lean on low-frequency colour), "
               "and data where leakage between frames is the shortcut tube masking leaves open "
               "(fast, textured objects over a static, textured background).")
    return out
