"""The published weights mgmae knows by name (``mgmae weights`` prints this table).

Every field was read in public material: the model zoos of MCG-NJU/VideoMAE (``MODEL_ZOO.md`` at
commit 26abf53) and MCG-NJU/MGMAE (``docs/MODEL_ZOO.md`` at af7beb9), the Hugging Face model
cards of the MCG-NJU repositories, and the file names of OpenGVLab/VideoMAE2's ``distill/`` folder
as public code downloads them. A field that could not be checked is left empty (no sha256 is
known for any of them: the publishers give none). ``browser``: the file is on a service that only
a browser can download from; ``file`` is the name it is looked for under
``<mgmae cache>/weights/``. ``top1``: the publisher's reported Kinetics-400 / SSv2 top-1 (%),
multi-view (``views``), with ``top1_source``.
"""

_VIDEOMAE_ZOO = "MCG-NJU/VideoMAE MODEL_ZOO.md"
_MGMAE_ZOO = "MCG-NJU/MGMAE docs/MODEL_ZOO.md"
_NC = "CC-BY-NC 4.0"


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view?usp=sharing"


def _videomae(name, model, pretrain, task, drive_id, top1="", views=""):
    return dict(name=name, model=model, pretrain=pretrain, task=task, top1=top1,
                top1_source=f"{_VIDEOMAE_ZOO}, {views}" if top1 else "", where=_drive(drive_id),
                browser="Google Drive", file=f"{name}.pth", licence=_NC, sha256="")


def _mgmae(name, pretrain, task, drive_id, top1="", views=""):
    return dict(name=name, model="ViT-B/16 (MGMAE)", pretrain=pretrain, task=task, top1=top1,
                top1_source=f"{_MGMAE_ZOO}, {views}" if top1 else "", where=_drive(drive_id),
                browser="Google Drive", file=f"{name.replace('-', '_')}.pth", licence="", sha256="")


WEIGHTS: list[dict[str, str]] = [
    # Hugging Face transformers directories (downloaded through huggingface_hub)
    dict(name="videomae-base", model="ViT-B/16 (VideoMAE)", pretrain="Kinetics-400", task="pretrain",
         top1="", top1_source="", where="hf-hub:MCG-NJU/videomae-base", licence="", sha256=""),
    dict(name="videomae-base-finetuned-kinetics", model="ViT-B/16 (VideoMAE)",
         pretrain="Kinetics-400, 1600 epochs", task="classify (Kinetics-400)", top1="",
         top1_source="", where="hf-hub:MCG-NJU/videomae-base-finetuned-kinetics", licence="",
         sha256=""),
    dict(name="videomae-huge-finetuned-kinetics", model="ViT-H/16 (VideoMAE)",
         pretrain="Kinetics-400, 1600 epochs", task="classify (Kinetics-400)", top1="",
         top1_source="", where="hf-hub:MCG-NJU/videomae-huge-finetuned-kinetics", licence=_NC,
         sha256=""),
    # VideoMAE V2 students distilled from ViT-g, raw .pth files in a hub repository
    dict(name="videomaev2-vit-b-k710-distill", model="ViT-B/16 (VideoMAE V2, distilled from ViT-g)",
         pretrain="", task="classify (Kinetics-710, 710 classes)", top1="", top1_source="",
         where="hf-hub:OpenGVLab/VideoMAE2/distill/vit_b_k710_dl_from_giant.pth", licence="",
         sha256=""),
    dict(name="videomaev2-vit-s-k710-distill", model="ViT-S/16 (VideoMAE V2, distilled from ViT-g)",
         pretrain="", task="classify (Kinetics-710, 710 classes)", top1="", top1_source="",
         where="hf-hub:OpenGVLab/VideoMAE2/distill/vit_s_k710_dl_from_giant.pth", licence="",
         sha256=""),
    # official VideoMAE checkpoints (Google Drive)
    _videomae("videomae-vit-b-k400-800e", "ViT-B/16 (VideoMAE)", "Kinetics-400, 800 epochs",
              "pretrain", "1JfrhN144Hdg7we213H1WxwR3lGYOlmIn"),
    _videomae("videomae-vit-b-k400-800e-ft", "ViT-B/16 (VideoMAE)", "Kinetics-400, 800 epochs",
              "classify (Kinetics-400, w/o repeated aug)", "18EEgdXY9347yK3Yb28O-GxFMbk41F6Ne",
              "79.4", "16x5x3"),
    _videomae("videomae-vit-b-k400-1600e", "ViT-B/16 (VideoMAE)", "Kinetics-400, 1600 epochs",
              "pretrain", "1tEhLyskjb755TJ65ptsrafUG2llSwQE1"),
    _videomae("videomae-vit-b-k400-1600e-ft", "ViT-B/16 (VideoMAE)", "Kinetics-400, 1600 epochs",
              "classify (Kinetics-400)", "1MzwteHH-1yuMnFb8vRBQDvngV1Zl-d3z", "80.9", "16x5x3"),
    _videomae("videomae-vit-l-k400-1600e", "ViT-L/16 (VideoMAE)", "Kinetics-400, 1600 epochs",
              "pretrain", "1qLOXWb_MGEvaI7tvuAe94CV7S2HXRwT3"),
    _videomae("videomae-vit-l-k400-1600e-ft", "ViT-L/16 (VideoMAE)", "Kinetics-400, 1600 epochs",
              "classify (Kinetics-400)", "1jX1CiqxSkCfc94y8FRW1YGHy-GNvHCuD", "84.7", "16x5x3"),
    _videomae("videomae-vit-b-ssv2-800e", "ViT-B/16 (VideoMAE)", "Something-Something V2, 800 epochs",
              "pretrain", "181hLvyrrPW2IOGA46fkxdJk0tNLIgdB2"),
    _videomae("videomae-vit-b-ssv2-800e-ft", "ViT-B/16 (VideoMAE)",
              "Something-Something V2, 800 epochs", "classify (SSv2, w/o repeated aug)",
              "1xZCiaPF4w7lYmLt5o1D5tIZyDdLtJAvH", "69.6", "16x2x3"),
    _videomae("videomae-vit-b-ssv2-2400e", "ViT-B/16 (VideoMAE)",
              "Something-Something V2, 2400 epochs", "pretrain", "1I18dY_7rSalGL8fPWV82c0-foRUDzJJk"),
    _videomae("videomae-vit-b-ssv2-2400e-ft", "ViT-B/16 (VideoMAE)",
              "Something-Something V2, 2400 epochs", "classify (SSv2)",
              "1dt_59tBIyzdZd5Ecr22lTtzs_64MOZkT", "70.6", "16x2x3"),
    # official MGMAE checkpoints (Google Drive)
    _mgmae("vit-b-k400-mgmae-800e", "Kinetics-400, 800 epochs", "pretrain",
           "10prrPjobDY4ayKpXhiMX8HHpxYqbLNCq"),
    _mgmae("vit-b-k400-mgmae-1600e", "Kinetics-400, 1600 epochs", "pretrain",
           "1EfcsX_vIYWLvm26mUXxJH8CZTbmr0ad9"),
    _mgmae("vit-b-ssv2-mgmae-800e", "Something-Something V2, 800 epochs", "pretrain",
           "14cEywYN0lMm5_he6bLlY1Zdsahw33dtG"),
    _mgmae("vit-b-ssv2-mgmae-2400e", "Something-Something V2, 2400 epochs", "pretrain",
           "1YR5N0LeqAO-fxYM1xb7kvM_x37yiTqKS"),
    _mgmae("vit-b-k400-mgmae-800e-k400-ft", "Kinetics-400, 800 epochs", "classify (Kinetics-400)",
           "1_Z_085fN6ZM0lw6vn1vbebvyTTmVui0H", "81.2", "16x5x3"),
    _mgmae("vit-b-k400-mgmae-1600e-k400-ft", "Kinetics-400, 1600 epochs", "classify (Kinetics-400)",
           "1VnbM9suJiRpR6d2djpYQeiinYKHUmDKz", "81.8", "16x5x3"),
    _mgmae("vit-b-ssv2-mgmae-800e-ssv2-ft", "Something-Something V2, 800 epochs", "classify (SSv2)",
           "1BGIQGlFPOITBF_0GB8ieoNZZiF7pPSsX", "71.0", "16x2x3"),
    _mgmae("vit-b-ssv2-mgmae-2400e-ssv2-ft", "Something-Something V2, 2400 epochs",
           "classify (SSv2)", "1TnHDyqPVw84fVzVrpvTiDWT_HU3kNRCo", "72.3", "16x2x3"),
]
