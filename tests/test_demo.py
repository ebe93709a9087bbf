"""The no-argument demo's path, shortened: every artefact is written and the loss goes down."""

import json

from PIL import Image

from mgmae.cli import main


def test_demo_writes_every_artefact_and_the_loss_goes_down(tmp_path, capsys):
    rc = main(["pretrain", "train.epochs=3", "train.warmup_epochs=1", "data.synthetic_videos=96",
               f"train.output_dir={tmp_path}", "train.run_name=demo", "train.num_workers=1",
               "train.tensorboard=false"])
    assert rc == 0
    run = tmp_path / "demo"
    for name in ("config.yaml", "log.jsonl", "loss.png", "checkpoint-final.pth", "reconstruction.png",
                 "reconstruction.gif", "classes.json"):
        assert (run / name).is_file(), name
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "step" in x and "loss" in x]
    assert len(steps) == 18 and steps[-1]["step"] == 18
    summary = lines[-1]["summary"]
    assert summary["ratio"] < 0.7, summary["message"]
    # the end-of-run check against the trivial predictor, on 64 clips, in the summary and the output
    assert summary["check_clips"] == 64 and summary["baseline_loss"] > 0
    assert abs(summary["baseline_ratio"] - summary["check_loss"] / summary["baseline_loss"]) < 1e-9
    assert not (run / "checkpoint-last.pth").exists()  # a finished run leaves only the final checkpoint
    out = capsys.readouterr().out
    assert "went clearly down" in out and str(run / "reconstruction.png") in out
    assert "mean visible colour" in out
    assert "encoder output on 8 clips" in out and 0 < summary["encoder_spread"] < 1
    assert "MotionGuidedMasker" in out  # the demo masks with motion guidance
    with Image.open(run / "reconstruction.png") as im:
        assert im.size[0] > 500 and im.size[1] > 300
    with Image.open(run / "reconstruction.gif") as im:
        assert im.n_frames == 16
