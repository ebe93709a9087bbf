"""`mgmae study`: the recipe parses, a tiny study runs end to end, writes the report's tables,
plots and GIFs, and a second run is served from the cache; `--quick` end to end (slow)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from mgmae.cli import main
from mgmae.experiments.plan import load_plan
from mgmae.experiments.runs import read_loss_curve
from mgmae.experiments.stats import mean_std
from mgmae.experiments.stats import verdict as _verdict

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "study_small.yaml"

SMOKE = {
    "base": {
        "model": {"name": "mae_vit_nano_patch8"},
        "data": {"dataset": "synthetic", "num_frames": 8, "img_size": 32, "synthetic_videos": 16},
        "masking": {"mask_ratio": 0.5},  # 8 of 16 cubes per slice visible: some land on objects
        "train": {"device": "cpu", "batch_size": 4, "warmup_epochs": 1, "num_workers": 0,
                  "tensorboard": False, "vis_clips": 0},
        "finetune": {"batch_size": 4, "warmup_epochs": 0, "eval_every": 1000,
                     "synthetic_val_videos": 4, "linprobe_epochs": 3},
    },
    "study": {
        "name": "smoke", "seeds": 1, "pretrain_steps": 3, "finetune_steps": 2, "eval_videos": 8,
        "mask_clips": 8, "loss_tail": 2,
        "strategies": {
            "tube": {"label": "tube", "set": {"masking.name": "tube"}},
            "motion_guided_gt": {"label": "motion-guided, GT flow",
                                 "set": {"masking.name": "motion_guided", "flow.name": "gt"}},
        },
        # one ablation group (the full mode's report path): pre-training, tracking and probe only
        "ablation_reference": "motion_guided_gt", "ablation_seeds": 1, "ablation_finetune": False,
        "ablations": {"warp": {"title": "warping", "reference": "backward",
                               "variants": {"forward": {"label": "forward",
                                                        "set": {"masking.warp": "forward"}}}}},
    },
}


def table_rows(md: str, first_header_cell: str) -> tuple[list[str], list[list[str]]]:
    """The header and body rows of the Markdown table whose header starts with ``first_header_cell``."""
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"| {first_header_cell} |"):
            header = [c.strip() for c in line.strip("|").split("|")]
            body = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                body.append([c.strip() for c in row.strip("|").split("|")])
            return header, body
    raise AssertionError(f"no table starting with {first_header_cell!r}")


def test_recipe_parses_in_both_modes():
    full = load_plan(RECIPE)
    quick = load_plan(RECIPE, quick=True)
    names = [s.name for s in full.strategies]
    assert names == ["random", "tube", "motion_guided_gt", "motion_guided_dis", "motion_guided_codec",
                     "motion_guided_official"]
    codec = full.strategy("motion_guided_codec").overrides
    assert codec["flow.name"] == "codec" and codec["data.synthetic_encode"] is True
    assert ("motion_guided_codec", "tube") in full.comparisons
    assert len(full.seeds) >= 3 and len(quick.seeds) >= 3
    assert quick.pretrain_steps < full.pretrain_steps and quick.finetune_steps < full.finetune_steps
    assert not quick.ablations
    groups = {a.group: [v.overrides for v in a.variants] for a in full.ablations}
    assert set(groups) == {"base_frame", "init_map", "warp", "mask_ratio", "flow_size"}
    assert {"flow.size": 32} in groups["flow_size"]
    official = full.strategy("motion_guided_official").overrides
    assert official["masking.direction"] == "official"  # the direction alone, not the official masks
    assert load_plan(RECIPE, seeds=5).seeds == [0, 1, 2, 3, 4]


def test_bad_keys_fail_before_anything_runs(tmp_path):
    bad = {"study": {"strategies": {"x": {"set": {"masking.nme": "tube"}}}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(KeyError, match="masking.name"):
        load_plan(tmp_path / "bad.yaml")
    bad = {"study": {"seedz": 3, "strategies": {"x": {"set": {}}}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="seedz"):
        load_plan(tmp_path / "bad.yaml")
    assert main(["study", "-c", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "x.md")]) == 2


def test_new_config_keys_at_their_old_behaviour_keep_cached_runs():
    """Keys added after studies were cached (model.pos_embed) change a run's hash only when set to
    something other than the behaviour from before, so existing caches stay valid."""
    from mgmae.config import Config, flatten
    from mgmae.experiments.runs import _HASH_AS, _HASH_UNLESS, _NO_HASH, _cfg_hash, _hash

    cfg = Config()
    flat = flatten(cfg.to_dict())
    for key, old_behaviour in _HASH_UNLESS.items():  # each new key's default is the old behaviour
        assert key not in flat or _HASH_AS.get((key, flat[key]), flat[key]) == old_behaviour, key
    old = {k: v for k, v in flat.items() if k not in _NO_HASH and k not in _HASH_UNLESS}
    old["flow.iters"] = 6  # its old default; null (the model's standard) means the same
    assert _cfg_hash(cfg, "x") == _hash([old, "x"])
    cfg.model.pos_embed = "sincos_3d"
    assert _cfg_hash(cfg, "x") != _hash([old, "x"])


def test_the_official_direction_hashes_as_official_compat_did():
    """masking.direction=official is what masking.official_compat=true meant before the switch
    gave the official masks (issue 32): it hashes as that did, so the study's cached
    'official direction' runs stay valid; the switch itself hashes as something new."""
    from mgmae.config import Config
    from mgmae.experiments.runs import _hashed_keys

    before = {**_hashed_keys(Config()), "masking.official_compat": True}
    direction = Config()
    direction.masking.direction = "official"
    assert _hashed_keys(direction) == before
    corrected = Config()
    corrected.masking.direction = "corrected"
    assert _hashed_keys(corrected) == _hashed_keys(Config())
    switch = Config()
    switch.masking.official_compat = True
    assert _hashed_keys(switch)["masking.official_compat"] == "official masks"


def test_statistics_helpers(tmp_path):
    m, s, n = mean_std([1.0, 2.0, 3.0])
    assert (m, n) == (2.0, 3) and s == pytest.approx(1.0)
    assert mean_std([5.0])[1:] == (0.0, 1)
    assert _verdict([1.0]) == "n=1"
    assert _verdict([1.0, 1.1, 0.9]) == "higher"
    assert _verdict([-1.0, 1.0, 0.1]) == "n.s."
    log = tmp_path / "log.jsonl"  # a resumed run repeats steps 3-4: the last record of a step wins
    recs = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.9}, {"step": 3, "loss": 0.8},
            {"step": 4, "loss": 0.7}, {"step": 3, "loss": 0.75}, {"step": 4, "loss": 0.65},
            {"summary": {"x": 1}}]
    log.write_text("\n".join(json.dumps(r) for r in recs))
    assert read_loss_curve(log) == [1.0, 0.9, 0.75, 0.65]


def test_paired_t_test_by_hand():
    """One test for the study and --compare-scratch: paired, two-sided, 5%, df = n - 1; Student's
    t of our own (no SciPy) matches the textbook table."""
    from mgmae.experiments.stats import paired_ttest, t_critical, t_sf

    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 30: 2.042}
    for df, crit in table.items():
        assert t_critical(df) == pytest.approx(crit, abs=1e-3), df
        assert t_sf(crit, df) == pytest.approx(0.05, abs=1e-4), df
    # differences 20, 21, 19: mean 20, sd 1, t = 20 / (1 / sqrt 3) = 34.6 > 4.303 at df 2
    tt = paired_ttest([20.0, 21.0, 19.0])
    assert (tt.mean, tt.sd, tt.df) == (pytest.approx(20.0), pytest.approx(1.0), 2)
    assert tt.t == pytest.approx(20 * 3 ** 0.5) and tt.significant and tt.direction == "higher"
    assert tt.describe().startswith("paired t-test: t=34.64, df=2, p=")
    assert tt.describe().endswith("(significant at 5%)")
    # the README's 5-seed lead: t = 2.59 < 2.776 at df 4, p = 0.061: not significant
    assert t_sf(2.59, 4) == pytest.approx(0.0607, abs=1e-4)
    assert paired_ttest([1.0]) is None  # one seed: no test
    assert paired_ttest([1.0, 1.0, 1.0]).significant  # no spread at all
    assert not paired_ttest([1.0, 1.0], resolution=5.0).significant  # the metric's step floors sd
    scipy = pytest.importorskip("scipy.stats")
    for df in (1, 3, 7, 50):
        for t in (0.3, 1.5, 2.9, 8.0):
            assert t_sf(t, df) == pytest.approx(2 * scipy.t.sf(t, df), rel=1e-9)


def test_study_takes_config_overrides_like_every_command(tmp_path, capsys):
    """`mgmae study -c RECIPE key=value`: train.output_dir is the cache (old flag --output-dir
    kept), other keys change every run's config; the compared strategies come from the plan."""
    recipe = tmp_path / "smoke.yaml"
    recipe.write_text(yaml.safe_dump(SMOKE, sort_keys=False))
    cache = tmp_path / "cache"
    assert main(["study", "-c", str(recipe), f"train.output_dir={cache}", "--dry-run"]) == 0
    assert f"runs cached in {cache / 'smoke'}" in capsys.readouterr().out
    assert main(["study", "-c", str(recipe), "--output-dir", str(cache), "--dry-run"]) == 0
    assert f"runs cached in {cache / 'smoke'}" in capsys.readouterr().out
    plan = load_plan(recipe, overrides=["train.batch_size=2", f"train.output_dir={cache}"])
    assert plan.output_dir == str(cache) and plan.config().train.batch_size == 2
    assert "train.output_dir" not in plan.base
    with pytest.raises(KeyError):
        load_plan(recipe, overrides=["train.batch_sise=2"])
    assert main(["study", "-c", str(recipe), "train.batch_sise=2", "--dry-run"]) == 2
    assert plan.reference == "tube" and plan.comparisons == [("motion_guided_gt", "tube")]
    custom = {**SMOKE, "study": {**SMOKE["study"], "reference": "motion_guided_gt",
                                 "comparisons": [["tube", "motion_guided_gt"]]}}
    recipe.write_text(yaml.safe_dump(custom, sort_keys=False))
    plan = load_plan(recipe)
    assert plan.reference == "motion_guided_gt" and plan.comparisons == [("tube", "motion_guided_gt")]
    custom["study"]["comparisons"] = [["tube", "nope"]]
    recipe.write_text(yaml.safe_dump(custom, sort_keys=False))
    with pytest.raises(ValueError, match="comparisons"):
        load_plan(recipe)


def test_smoke_study_end_to_end_and_cached(tmp_path, capsys):
    recipe = tmp_path / "smoke.yaml"
    recipe.write_text(yaml.safe_dump(SMOKE, sort_keys=False))
    out = tmp_path / "docs" / "experiments.md"
    args = ["study", "-c", str(recipe), "--out", str(out), "--output-dir", str(tmp_path / "runs")]
    assert main(args) == 0
    first = capsys.readouterr().out
    md = out.read_text()
    header, body = table_rows(md, "strategy")
    assert header == ["strategy", "loss at end of pre-training", "tracking: moving", "tracking: all",
                      "linear probe: motion", "linear probe: appearance", "attentive probe: motion",
                      "attentive probe: appearance", "fine-tune: motion", "fine-tune: appearance"]
    assert [r[0] for r in body] == ["from scratch (no pre-training)", "tube", "motion-guided, GT flow"]
    for row in body[1:]:  # every cell of a pre-trained strategy holds a number
        for cell in row[1:]:
            assert re.match(r"^-?\d+(\.\d+)?%?$", cell), (row, cell)
    assert body[0][1] == "–" and re.match(r"^\d+(\.\d+)?$", body[0][4])
    for k in (1, 2):
        assert 0 <= float(body[k][2].rstrip("%")) <= 100 and 0 <= float(body[k][3].rstrip("%")) <= 100
    assert "mgmae study -c" in md and " cores " in md and "Wall time" in md
    assert "## Every run" in md and "### Reconstruction difficulty" in md
    a_header, a_body = table_rows(md, "ablation")  # reference row (the main run), then the variant
    assert a_header[:5] == ["ablation", "setting", "loss at end", "tracking: moving", "tracking: all"]
    assert [r[:2] for r in a_body] == [["warping", "backward (reference: motion-guided, GT flow)"],
                                     ["", "forward"]]
    for row in a_body:  # loss, tracking, linear and attentive probes filled
        assert all(re.match(r"^-?\d+(\.\d+)?%?$", c) for c in row[2:9]), row
    assert a_body[1][9:] == ["–", "–"]  # ablation encoders are not fine-tuned (the reference is)
    images = out.parent / "images"
    for name in ("smoke_loss.png", "smoke_accuracy.png", "smoke_masks.png",
                 "smoke_masks_tube.gif", "smoke_masks_motion_guided_gt.gif"):
        assert (images / name).is_file(), name
        assert f"images/{name}" in md
    assert "(cached)" not in first
    runs = tmp_path / "runs"
    ft_dirs = [d for d in runs.rglob("ft-*") if d.is_dir()]
    assert ft_dirs and not any(list(d.glob("checkpoint-*.pth")) for d in ft_dirs)  # weights not kept
    # second run: everything from the cache, the same table
    assert main(args) == 0
    second = capsys.readouterr().out
    assert second.count("(cached)") == first.count("[study] (") and "(cached)" in second
    assert table_rows(out.read_text(), "strategy")[1] == body
    # --report-only works from the cache; with an empty cache it fails
    assert main(args + ["--report-only"]) == 0
    assert main(["study", "-c", str(recipe), "--out", str(tmp_path / "y.md"),
                 "--output-dir", str(tmp_path / "empty"), "--report-only"]) == 1
    capsys.readouterr()
    # the records alone (results/ and invocations/, no weights) continue the study elsewhere
    other = tmp_path / "other"
    for sub in ("results", "invocations"):
        shutil.copytree(runs / "smoke" / sub, other / "smoke" / sub, ignore=shutil.ignore_patterns("*.lock"))
    args2 = args[:-1] + [str(other)]
    assert main(args2) == 0
    third = capsys.readouterr().out
    assert third.count("(cached)") == first.count("[study] (")
    assert table_rows(out.read_text(), "strategy")[1] == body
    # a missing fine-tuning record needs the encoder's weights: its pre-training runs again
    (ft,) = (other / "smoke" / "results").glob("ft-pt-tube-s0-*-motion-*.json")
    ft.unlink()
    assert main(args2 + ["--dry-run"]) == 0  # lists every run, recorded or not
    listing = [x for x in capsys.readouterr().out.splitlines() if x.startswith("  [")]
    assert len(listing) > first.count("[study] (")  # (+ the reconstruction losses)
    assert [x.split()[-1] for x in listing if x.startswith("  [ ]")] == [ft.stem]
    assert main(args2) == 0
    fourth = capsys.readouterr().out
    assert re.search(r"pre-train pt-tube-s0-\w+: loss end [\d.]+; \(\d+ s\)", fourth), fourth
    assert re.search(r"fine-tune pt-tube-s0-\w+ on motion labels: top-1 [\d.]+%; \(\d+ s\)", fourth)
    assert fourth.count("(cached)") == first.count("[study] (") - 2


@pytest.mark.slow
def test_quick_study_end_to_end(tmp_path):
    out = tmp_path / "experiments.md"
    assert main(["study", "-c", str(RECIPE), "--quick", "--out", str(out),
                 "--output-dir", str(tmp_path / "runs")]) == 0
    md = out.read_text()
    header, body = table_rows(md, "strategy")
    assert [r[0] for r in body] == ["from scratch (no pre-training)", "random", "tube",
                                    "motion-guided, GT flow", "motion-guided, DIS flow",
                                    "motion-guided, official direction (GT flow)"]
    for row in body[1:]:
        assert all("±" in c for c in (row[1], *row[4:])), row  # >= 3 seeds: mean ± std
    # at 64 px the masks that follow ground-truth flow track moving objects better than tube
    # masks, and the official flow direction (wrong before the base frame) tracks worse
    track = {r[0]: float(r[2].rstrip("%")) for r in body[1:]}
    assert track["motion-guided, GT flow"] > track["tube"]
    assert track["motion-guided, GT flow"] > track["motion-guided, official direction (GT flow)"]
    assert "--quick" in md


def test_codec_strategy_runs_on_encoded_synthetic_videos(tmp_path):
    """The study's codec strategy: synthetic clips through libx264 and back, masks from their
    motion vectors; its row is filled like every other."""
    import copy

    smoke = copy.deepcopy(SMOKE)
    smoke["study"]["strategies"] = {
        "tube": {"label": "tube", "set": {"masking.name": "tube"}},
        "motion_guided_codec": {"label": "motion-guided, codec flow (H.264)",
                                "set": {"masking.name": "motion_guided", "flow.name": "codec",
                                        "data.synthetic_encode": True}}}
    for k in ("ablation_reference", "ablation_seeds", "ablation_finetune", "ablations"):
        smoke["study"].pop(k)
    recipe = tmp_path / "codec.yaml"
    recipe.write_text(yaml.safe_dump(smoke, sort_keys=False))
    out = tmp_path / "experiments.md"
    assert main(["study", "-c", str(recipe), "--out", str(out), "--output-dir", str(tmp_path / "runs")]) == 0
    _, body = table_rows(out.read_text(), "strategy")
    assert [r[0] for r in body] == ["from scratch (no pre-training)", "tube", "motion-guided, codec flow (H.264)"]
    for cell in body[2][1:]:
        assert re.match(r"^-?\d+(\.\d+)?%?$", cell), (body[2], cell)


def test_fine_tuning_at_equal_epochs(tmp_path):
    """With validation along the fine-tuning runs (finetune.eval_every), the report compares the
    strategies at equal epochs and on the best validation top-1, with the paired t-test, as
    --compare-scratch does (issue 21's protocol)."""
    import copy

    smoke = copy.deepcopy(SMOKE)
    for k in ("ablation_reference", "ablation_seeds", "ablation_finetune", "ablations"):
        smoke["study"].pop(k)
    smoke["study"].update(seeds=2, finetune_steps=8, labels=["motion"],
                          finetune={"finetune.eval_every": 1},  # 4 steps an epoch: epochs 1 and 2
                          protocol="Question: does it?\n\n- Seeds 0, 1.")
    recipe = tmp_path / "eq.yaml"
    recipe.write_text(yaml.safe_dump(smoke, sort_keys=False))
    out = tmp_path / "experiments.md"
    assert main(["study", "-c", str(recipe), "--out", str(out), "--output-dir", str(tmp_path / "runs")]) == 0
    md = out.read_text()
    head = md.split("```bash")[0]  # the protocol comes first, under the heading
    assert "**Protocol**, fixed before the first run" in head and "Question: does it?\n\n- Seeds 0, 1." in head
    assert "### Fine-tuning at equal epochs" in md
    assert "## Ablations" not in md  # the recipe has none: nothing to say about them
    quick = load_plan(ROOT / "configs" / "study_small.yaml", quick=True)  # leaves the recipe's out
    assert not quick.ablations and "warping" in quick.skipped_ablations
    header, body = table_rows(md, "motion labels")
    assert header == ["motion labels", "epoch 1", "epoch 2", "best"]
    assert [r[0] for r in body] == ["from scratch (no pre-training)", "tube", "motion-guided, GT flow"]
    for row in body:
        assert all(re.match(r"^\d+(\.\d+)? ± \d+(\.\d+)?$", c) for c in row[1:]), row
    header, body = table_rows(md, "comparison")  # the first 'comparison' table: the main one
    assert any(r[0] == "motion-guided, GT flow − tube" for r in body)
    eq = md.split("### Fine-tuning at equal epochs")[1]
    _, diffs = table_rows(eq, "comparison")
    assert diffs[0][0] == "motion-guided, GT flow − tube" and len(diffs[0]) == 4
    assert all(re.search(r"\((higher|lower|n\.s\.)\)$", c) for c in diffs[0][1:])


def test_claims_let_processes_share_a_study(tmp_path, capsys):
    """Two processes on one cache: a run claimed by a live process (its lock file) is left to it
    together with the runs that need it; this process computes the rest, writes no report and
    says who has the rest; a lock of a dead process is taken over; the last process writes it."""
    import os
    import subprocess
    import sys

    from mgmae.experiments.runs import Busy, claim

    lock = tmp_path / "x.lock"
    with claim(lock):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
        with pytest.raises(Busy, match=f"pid {os.getpid()}"), claim(lock):
            pass
    assert not lock.exists()  # released
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    import socket
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with claim(lock):  # its process is gone: taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()

    smoke = {**SMOKE, "study": {**SMOKE["study"], "ablations": {}}}
    recipe = tmp_path / "smoke.yaml"
    recipe.write_text(yaml.safe_dump(smoke, sort_keys=False))
    out = tmp_path / "experiments.md"
    args = ["study", "-c", str(recipe), "--out", str(out), "--output-dir", str(tmp_path / "runs")]
    plan = load_plan(recipe, output_dir=str(tmp_path / "runs"))
    from mgmae.experiments.runs import Study
    study = Study(plan)
    key = study.pretrain_key(plan.strategy("motion_guided_gt"), 0)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        held = study.results / f"{key}.lock"
        held.parent.mkdir(parents=True)
        held.write_text(json.dumps({"pid": other.pid, "host": socket.gethostname()}))
        assert main(args) == 0
        text = capsys.readouterr().out
        assert f"{key} is being computed by pid {other.pid}" in text
        assert "1 run(s) are still being computed" in text and not out.exists()
        done = {p.stem for p in study.results.glob("*.json")}
        assert any(k.startswith("pt-tube-s0") for k in done)  # the rest was computed
        assert not any(k.startswith(f"lp-{key}") or k.startswith(f"ft-{key}") for k in done)
    finally:
        other.kill()
        other.wait()
    assert main(args) == 0  # the holder is gone: its runs are taken over, the report written
    assert out.is_file() and "is being computed" not in capsys.readouterr().out
    invs = list((study.root / "invocations").glob("*.json"))
    assert len(invs) == 2 and all("t_start" in json.loads(p.read_text()) for p in invs)


def test_wall_time_counts_overlapping_invocations_once():
    from mgmae.experiments.report import elapsed_seconds

    runs = [{"t_start": 0, "t_end": 100, "wall_seconds": 100},
            {"t_start": 50, "t_end": 120, "wall_seconds": 70},  # side by side with the first
            {"t_start": 200, "t_end": 230, "wall_seconds": 30},
            {"wall_seconds": 40}]  # an older record without times
    assert elapsed_seconds(runs) == 120 + 30 + 40


def test_reports_are_sections_of_one_file(tmp_path):
    """Several studies share docs/experiments.md: each writes between its own markers, replacing
    its earlier version in place and leaving the others (and text outside them) as they are."""
    from mgmae.experiments.report import write_section

    out = tmp_path / "experiments.md"
    write_section(out, "a", "# A\n\nfirst\n")
    assert out.read_text() == "<!-- mgmae study a: begin -->\n# A\n\nfirst\n<!-- mgmae study a: end -->\n"
    write_section(out, "b", "# B\n")
    write_section(out, "a", "# A\n\nsecond\n")
    text = out.read_text()
    assert "first" not in text and text.count("# A") == 1 and text.index("# A") < text.index("# B")
    assert text.count("<!-- mgmae study a: begin -->") == 1 and text.endswith("<!-- mgmae study b: end -->\n")
    out.write_text("intro by hand\n\n" + text)
    write_section(out, "b", "# B2\n")
    assert out.read_text().startswith("intro by hand\n") and "# B2" in out.read_text() and "# B\n" not in out.read_text()


def test_jobs_start_helpers_that_share_the_runs(tmp_path, capsys):
    """`--jobs 2`: a helper process takes runs from the same cache; every run is computed once,
    by one of the two, and the parent writes the report after the helper is done."""
    smoke = {**SMOKE, "study": {**SMOKE["study"], "ablations": {}}}
    recipe = tmp_path / "smoke.yaml"
    recipe.write_text(yaml.safe_dump(smoke, sort_keys=False))
    out = tmp_path / "experiments.md"
    runs = tmp_path / "runs"
    assert main(["study", "-c", str(recipe), "--out", str(out), "--output-dir", str(runs), "--jobs", "2"]) == 0
    parent = capsys.readouterr().out
    helper = (runs / "smoke" / "logs" / "study-job-1.log").read_text()
    assert "[study] helper 1: pid" in parent and out.is_file()
    computed = [ln for ln in (parent + helper).splitlines()
                if re.match(r"\[study\] \(\d+/\d+\) ", ln) and not ln.endswith("(cached)")]
    tasks = [re.sub(r"^\[study\] \(\d+/\d+\) ([^:]+):.*", r"\1", ln) for ln in computed]
    from mgmae.experiments.runs import Study
    study = Study(load_plan(recipe), jobs=2)
    assert len(tasks) == len(set(tasks)) == study.count(), tasks  # every task once, by one process
    assert any(ln in helper for ln in computed)  # the helper did some of them
    invs = list((runs / "smoke" / "invocations").glob("*.json"))
    assert len(invs) == 2
    assert study.threads() == max(1, (os.cpu_count() or 1) // 2)  # (no loader workers here)


def test_reading_says_whether_pre_training_transfers(tmp_path):
    """The report's reading follows the numbers: where fine-tuning from the reference strategy beats
    fine-tuning from random weights significantly, it says so and states the scope; where it does
    not (a linear-probe win alone included), it says what it would take."""
    import copy

    from mgmae.experiments.report import Row, _reading
    from mgmae.experiments.runs import Study

    smoke = copy.deepcopy(SMOKE)
    for k in ("ablation_reference", "ablation_seeds", "ablation_finetune", "ablations"):
        smoke["study"].pop(k)
    smoke["study"].update(labels=["motion"], seeds=3)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(smoke, sort_keys=False))
    study = Study(load_plan(recipe, output_dir=str(tmp_path)))

    def rows(ft_tube):
        mk = lambda name, ft, loss: Row(name, name, loss, None, None, {"motion": [12.0, 13.0, 12.5]},  # noqa: E731
                                        {"motion": ft}, [0, 1, 2], [1.0] * 3)
        return [mk("scratch", [14.0, 16.4, 15.0], []), mk("tube", ft_tube, [0.1, 0.1, 0.1]),
                mk("motion_guided_gt", [70.0, 72.0, 71.0], [0.11, 0.12, 0.115])]

    records = {"recon": [], "pretrain": []}
    text = "\n".join(_reading(study, rows([76.6, 75.8, 77.0]), records))
    assert "Yes: at this budget pre-training transfers" in text and "**Scope.**" in text
    assert "What it would take" not in text
    # (the accuracies' std is floored at one of the 8 held-out videos: 12.5 points)
    assert "**motion_guided_gt vs tube**, downstream (paired): linear probe motion +0.0 ± 0.0 points (n.s.); " \
           "fine-tuning motion -5.5 ± 1.5 points (n.s.)" in text
    text = "\n".join(_reading(study, rows([14.5, 16.0, 15.2]), records))
    assert "Yes: at this budget" not in text and "What it would take" in text
    # a linear-probe win over no pre-training, with fine-tuning no better, is not transfer
    # (study_small: tube's probe beat scratch's on appearance while fine-tuning sat at chance)
    lp_only = rows([14.5, 16.0, 15.2])
    lp_only[1].lp = {"motion": [40.0, 45.0, 50.0]}
    text = "\n".join(_reading(study, lp_only, records))
    assert "linear probe motion +32.5 ± 4.8 (higher)" in text
    assert "Yes: at this budget" not in text and "What it would take" in text
