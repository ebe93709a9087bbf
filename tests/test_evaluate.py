"""Evaluation: view averaging and metrics against hand-computed values, the output files, the
``mgmae eval`` command on a checkpoint, and label / checkpoint errors."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from mgmae.config import load_config
from mgmae.engine.checkpoint import save_checkpoint
from mgmae.engine.evaluate import (average_views, check_labels, classification_metrics, cli_main,
                                   evaluate)
from mgmae.models import create_model

TINY = ["data.num_frames=4", "data.img_size=16", "finetune.synthetic_val_videos=6",
        "train.num_workers=0"]


# ----------------------------------------------------------------------------- pure functions
def test_average_views_hand_computed():
    ln3, ln4 = math.log(3), math.log(4)
    logits = torch.tensor([
        [0.0, 0.0],    # video 0: softmax (0.5, 0.5)
        [ln3, 0.0],    #          (0.75, 0.25)
        [0.0, ln3],    #          (0.25, 0.75)
        [ln4, 0.0],    # video 1: (0.8, 0.2)
        [ln4, 0.0],    #          (0.8, 0.2)
        [0.0, ln4],    #          (0.2, 0.8)
    ])
    avg = average_views(logits, 3)
    torch.testing.assert_close(avg, torch.tensor([[0.5, 0.5], [0.6, 0.4]]))
    # averaging probabilities is not averaging logits: video 1's mean logit would give 0.667
    with pytest.raises(ValueError, match="3 x videos"):
        average_views(logits[:5], 3)


def test_classification_metrics_hand_computed():
    scores = np.array([
        [0.7, 0.2, 0.1],  # label 0, pred 0 (right)
        [0.5, 0.4, 0.1],  # label 1, pred 0 (wrong; label is 2nd)
        [0.1, 0.3, 0.6],  # label 2, pred 2 (right)
        [0.2, 0.5, 0.3],  # label 2, pred 1 (wrong)
        [0.9, 0.05, 0.05],  # unlabelled: ignored
    ])
    labels = np.array([0, 1, 2, 2, -1])
    m = classification_metrics(scores, labels)
    assert m["num_videos"] == 4
    assert m["top1"] == pytest.approx(50.0)
    assert m["top5"] == pytest.approx(100.0)  # 3 classes: every label is in the top 5
    assert m["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert [pc["acc"] for pc in m["per_class"]] == [100.0, 0.0, 50.0]
    assert m["mean_class_acc"] == pytest.approx(50.0)
    m2 = classification_metrics(scores[:4, :2], np.array([0, 1, 1, 0]), num_classes=3)
    assert m2["per_class"][2] == {"class": 2, "count": 0, "correct": 0, "acc": None}


# ----------------------------------------------------------------------------- a fake model
class ViewsDataset(torch.utils.data.Dataset):
    """Videos with ``num_sample`` views; view v of video i is a constant clip of value
    ``values[i][v]`` (the fake model reads the value back as class scores)."""

    def __init__(self, values, labels):
        self.values, self.labels = values, labels
        self.num_sample = len(values[0])

    def __len__(self):
        return len(self.values)

    def __getitem__(self, i):
        video = torch.stack([torch.full((3, 2, 4, 4), float(v)) for v in self.values[i]])
        return {"video": video, "label": self.labels[i], "index": i}


class FakeModel(nn.Module):
    """logits = (0, 0, x) for a clip of constant value x: class 2 wins above 0, else a tie
    between 0 and 1 that argmax resolves to class 0."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        v = x.mean(dim=(1, 2, 3, 4))  # [B]
        z = torch.zeros_like(v)
        return torch.stack([z, z, v], 1)


def test_evaluate_outputs_on_a_fake_model(tmp_path):
    # video 0: views (2, -5) -> mean softmax favours class 2?  softmax(0,0,2) = (.106,.106,.787),
    #          softmax(0,0,-5) = (.4983,.4983,.0034) -> mean (.302,.302,.395): class 2
    # video 1: views (-1, -1) -> (.4223,.4223,.1554): class 0 (ties go to the first)
    # video 2: views (3, 3) -> class 2
    # video 3: views (0.1, -4) -> mean (.409, .409, .183): class 0
    values = [(2, -5), (-1, -1), (3, 3), (0.1, -4)]
    labels = [2, 1, 2, 0]  # right, wrong, right, right -> top-1 75%
    ds = ViewsDataset(values, labels)
    res = evaluate(FakeModel(), ds, batch_size=3, out_dir=tmp_path / "ev",
                   class_names=["a", "b", "c"], progress=False)
    assert res.top1 == pytest.approx(75.0)
    assert res.metrics["num_views"] == 2
    assert res.scores.shape == (4, 3)
    np.testing.assert_allclose(res.scores[1], [0.4223, 0.4223, 0.1554], atol=1e-4)
    files = res.files
    png = open(files["confusion"], "rb").read(8)
    assert png == b"\x89PNG\r\n\x1a\n"
    with open(files["predictions"]) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["pred"] for r in rows] == ["2", "0", "2", "0"]
    assert [r["correct"] for r in rows] == ["1", "0", "1", "1"]
    assert rows[1]["label_name"] == "b" and rows[1]["pred_name"] == "a"
    assert rows[0]["top5"].split()[0] == "2"
    metrics = json.loads(open(files["metrics"]).read())
    assert metrics["top1"] == pytest.approx(75.0)
    assert metrics["per_class"][1]["name"] == "b" and metrics["per_class"][1]["acc"] == 0.0
    assert np.load(files["scores"]).shape == (4, 3)


# ----------------------------------------------------------------------------- the command
def _classifier_checkpoint(path, num_classes=8, **cfg_over):
    cfg = load_config(None, TINY + [f"{k}={v}" for k, v in cfg_over.items()])
    clf = create_model("vit_nano_patch8", num_classes=num_classes, num_frames=4, img_size=16)
    return save_checkpoint(path, model=clf, config=cfg.to_dict(), kind="classify",
                           extra={"class_names": [f"c{i}" for i in range(num_classes)]})


def test_eval_cli_on_synthetic_checkpoint(tmp_path, capsys):
    ckpt = _classifier_checkpoint(tmp_path / "clf.pth")
    out = tmp_path / "ev"
    assert cli_main([str(ckpt), "-o", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "top-1" in printed and "6 videos x 1 views" in printed
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and rows[0]["path"] == "synthetic:1:0"
    assert rows[0]["label_name"].startswith("c")  # class names from the checkpoint
    metrics = json.loads((out / "metrics.json").read_text())
    correct = sum(int(r["correct"]) for r in rows)
    assert metrics["top1"] == pytest.approx(100 * correct / 6)
    assert (out / "confusion.png").is_file()


def test_eval_refuses_checkpoints_without_head(tmp_path, capsys):
    cfg = load_config(None, TINY)
    mae = create_model("mae_vit_nano_patch8", num_frames=4, img_size=16)
    path = save_checkpoint(tmp_path / "pre.pth", model=mae, config=cfg.to_dict(), kind="pretrain")
    assert cli_main([str(path), "--quiet"]) == 2
    assert "fine-tune it first" in capsys.readouterr().err


def test_eval_labels_outside_the_head_name_the_line(tmp_path, capsys):
    ckpt = _classifier_checkpoint(tmp_path / "clf.pth", num_classes=5)
    test = tmp_path / "test.txt"
    test.write_text("a.mp4 1\nb.mp4 4\n\nc.mp4 5\n")
    assert cli_main([str(ckpt), f"data.test_list={test}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{test}:4: label 5 is outside [0, 5)" in err


def test_check_labels_csv_header_and_folder(tmp_path):
    from mgmae.config import DataConfig
    from mgmae.data.datasets import ListFileError, build_dataset

    lst = tmp_path / "l.csv"
    lst.write_text("path,label\na.mp4,0\nb.mp4,3\n")
    ds, _ = build_dataset(DataConfig(train_list=str(lst)), train=True)
    with pytest.raises(ListFileError, match=r"l\.csv:3: label 3"):
        check_labels(ds, 2, str(lst))
    check_labels(ds, 4, str(lst))  # fine


def test_eval_multiview_on_frame_folders_skips_unreadable_videos(tmp_path, capsys):
    import os

    import cv2

    for name in ("v0", "v1"):
        os.makedirs(tmp_path / name)
        for i in range(10):
            cv2.imwrite(str(tmp_path / name / f"img_{i + 1:05d}.jpg"),
                        np.full((20, 28, 3), 25 * i, np.uint8))
    test = tmp_path / "test.txt"
    test.write_text(f"{tmp_path / 'v0'} 10 1\n{tmp_path / 'gone'} 10 2\n{tmp_path / 'v1'} 10 3\n")
    ckpt = _classifier_checkpoint(tmp_path / "clf.pth", num_classes=5)
    out = tmp_path / "ev"
    assert cli_main([str(ckpt), f"data.test_list={test}", "--views", "2", "3", "-o", str(out),
                     "--quiet", "data.dataset=list", "data.max_fail_frac=0.5"]) == 0
    printed = capsys.readouterr().out  # (over data.max_fail_frac it is an error: test_reliability.py)
    assert "1 of 3 videos could not be read" in printed
    assert "1 of 3 videos unreadable, not scored" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_views"] == 6 and metrics["num_videos"] == 2
    assert metrics["unreadable"] == [str(tmp_path / "gone")]
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["path"], r["label"]) for r in rows] == [(str(tmp_path / "v0"), "1"),
                                                      (str(tmp_path / "v1"), "3")]
