"""bench/gpu_check.py --smoke: the GPU check's code paths on the CPU with tiny sizes, so the script
cannot rot between the rare runs on a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_runs_every_section(tmp_path):
    out = tmp_path / "gpu.md"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = str(ROOT / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    md = res.stdout
    assert out.read_text() in md + "\n" or out.read_text().strip() in md
    assert md.startswith("## GPU check (SMOKE")
    for head in ("### (a) ViT-B MAE train step", "### (b) Batched RAFT-small mask generation",
                 "### (c) mgmae pretrain -c pretrain_vit_base_ssv2", "### (d) pytest -m gpu"):
        assert head in md, head
    assert "error" not in md.lower(), md  # every section ran through on the CPU
    assert "torch " in md and "CUDA " in md and "date: " in md
    # (a) has every variant, (b) both precisions, (c) the split, (d) the GPU tests (skipped here)
    for row in ("| ours | eager |", "| hf | eager |", "| ours | run_cell 0.5 |", "| ours | act. ckpt |",
                "| ours | compile |", "| fp32 |", "| bf16 |", "| flow + mask |", "| model (fwd + bwd + AdamW) |"):
        assert row in md, row
    assert "RANDOM WEIGHTS" in md and "skipped" in md


def test_gpu_check_sections_report_their_own_errors(tmp_path, monkeypatch):
    """A section that raises prints its error in its place; the others still run."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))

    def boom(ctx):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(gpu_check, "section_a", boom)
    monkeypatch.setattr(gpu_check, "section_b", lambda ctx: ["b ran"])
    out = tmp_path / "x.md"
    assert gpu_check.main(["--smoke", "--sections", "ab", "--out", str(out)]) == 0
    text = out.read_text()
    assert "**error in this section**: `RuntimeError: simulated failure`" in text
    assert "b ran" in text and text.index("simulated failure") < text.index("b ran")
