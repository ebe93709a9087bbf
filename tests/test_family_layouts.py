"""Checkpoint key layouts of other VideoMAE-family models, as their public model code names them.

The state dicts are generated here from the key lists read in each project's model code (names and
shapes only, random values); nothing is downloaded.

* UMT (OpenGVLab/unmasked_teacher, single_modality/models/modeling_pretrain_umt.py):
  ``PretrainVisionTransformer`` = ``encoder`` (``PretrainVisionTransformerEncoder``: patch_embed,
  blocks of modeling_finetune.Block with q_bias / v_bias, norm; ``head`` is Identity with 0
  classes; the position table is a plain tensor, not in the state dict) + ``clip_decoder``
  (a ModuleList of ``Linear_Decoder``: ``head`` Linear(embed_dim, clip_output_dim) and ``norm``
  LayerNorm(clip_output_dim)), one per returned teacher layer (``--clip_return_layer``).
  ``Block`` gains ``gamma_1`` / ``gamma_2`` (LayerScale) when ``init_values > 0``.
* SIGMA (QUVA-Lab/SIGMA, modeling_pretrain.py): VideoMAE's ``encoder`` / ``decoder`` /
  ``encoder_to_decoder`` / ``mask_token``, the decoder's ``head`` predicting
  ``decoder_num_classes`` (the DINO teacher's feature width), plus ``prototypes`` (SwAV loss),
  ``memory`` and ``memory_pred_head`` (Sequential Linear, GELU, Linear, GELU, Linear) when
  ``memory_size > 0``; the teacher is not in the state dict.
* SMILE (fmthoker/SMILE, modeling_pretrain.py): VideoMAE's layout as it is (pixel decoder,
  ``decoder_num_classes=1536``).
* MME (XinyuSun/MME, pretrain/model.py): ``decoder`` and ``encoder_to_decoder`` are ModuleLists
  (one per target: ``decoder.N.blocks``, ``decoder.N.norm``, ``decoder.N.head.K`` = Sequential
  Linear(embed_dim, 512), GELU, Linear(512, nc), ...), one ``mask_token``.
"""

from __future__ import annotations

import pytest
import torch

from mgmae.convert import load_model
from mgmae.models import create_model

D, DEPTH, P, TUBELET = 128, 4, 8, 2  # our registered "nano" width, so the heads are known


def _block(prefix: str, d: int, gamma: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(len(prefix))
    r = lambda *s: torch.randn(*s, generator=g) * 0.02  # noqa: E731
    sd = {f"{prefix}norm1.weight": 1 + r(d), f"{prefix}norm1.bias": r(d),
          f"{prefix}attn.qkv.weight": r(3 * d, d), f"{prefix}attn.q_bias": r(d),
          f"{prefix}attn.v_bias": r(d), f"{prefix}attn.proj.weight": r(d, d),
          f"{prefix}attn.proj.bias": r(d), f"{prefix}norm2.weight": 1 + r(d),
          f"{prefix}norm2.bias": r(d), f"{prefix}mlp.fc1.weight": r(4 * d, d),
          f"{prefix}mlp.fc1.bias": r(4 * d), f"{prefix}mlp.fc2.weight": r(d, 4 * d),
          f"{prefix}mlp.fc2.bias": r(d)}
    if gamma:
        sd[f"{prefix}gamma_1"] = torch.full((d,), 0.1)
        sd[f"{prefix}gamma_2"] = torch.full((d,), 0.1)
    return sd


def umt_pretrain_state_dict(clip_layers: int = 2, clip_dim: int = 64, gamma: bool = False):
    """The keys and shapes of UMT's PretrainVisionTransformer.state_dict()."""
    sd = {"encoder.patch_embed.proj.weight": torch.randn(D, 3, TUBELET, P, P) * 0.02,
          "encoder.patch_embed.proj.bias": torch.zeros(D)}
    for i in range(DEPTH):
        sd.update(_block(f"encoder.blocks.{i}.", D, gamma))
    sd.update({"encoder.norm.weight": torch.ones(D), "encoder.norm.bias": torch.zeros(D)})
    for k in range(clip_layers):
        sd.update({f"clip_decoder.{k}.head.weight": torch.randn(clip_dim, D) * 0.02,
                   f"clip_decoder.{k}.head.bias": torch.zeros(clip_dim),
                   f"clip_decoder.{k}.norm.weight": torch.ones(clip_dim),
                   f"clip_decoder.{k}.norm.bias": torch.zeros(clip_dim)})
    return sd


def test_umt_pretraining_checkpoint_loads_as_an_encoder(tmp_path):
    sd = umt_pretrain_state_dict()
    path = tmp_path / "umt_b16_ptk710.pth"
    torch.save({"model": sd}, path)
    enc = load_model(path, task="encoder", num_frames=4, img_size=16)
    rep = enc.load_report
    assert rep.ok and rep.source == "official" and rep.source_kind == "encoder"
    assert sorted(rep.dropped) == sorted(k for k in sd if k.startswith("clip_decoder."))
    assert any("UMT" in n for n in rep.notes)
    # every encoder tensor arrived: the same encoder as one of ours given those weights
    ours = create_model("vit_nano_patch8", num_frames=4, img_size=16, num_classes=0)
    mapped = {k.removeprefix("encoder."): v for k, v in sd.items() if k.startswith("encoder.")}
    missing, unexpected = ours.load_state_dict(mapped, strict=False)
    assert not unexpected and all(k.endswith("pos_embed") for k in missing)
    x = torch.randn(1, 3, 4, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(enc.eval().forward_features(x), ours.eval().forward_features(x))
    clf = load_model(path, task="classify", num_classes=7, num_frames=4, img_size=16)
    assert clf.load_report.ok and clf.num_classes == 7


def test_layer_scale_is_refused_naming_why(tmp_path):
    path = tmp_path / "umt_layerscale.pth"
    torch.save({"model": umt_pretrain_state_dict(gamma=True)}, path)
    with pytest.raises(ValueError, match="gamma_2 are LayerScale weights .*init_values > 0"):
        load_model(path, task="encoder", num_frames=4, img_size=16)


DEC, DEC_DEPTH = 64, 2  # the nano decoder width


def videomae_pretrain_state_dict(decoder_out: int = 3 * TUBELET * P * P):
    """VideoMAE's PretrainVisionTransformer keys (SMILE's too; SIGMA's core)."""
    sd = {"encoder.patch_embed.proj.weight": torch.randn(D, 3, TUBELET, P, P) * 0.02,
          "encoder.patch_embed.proj.bias": torch.zeros(D)}
    for i in range(DEPTH):
        sd.update(_block(f"encoder.blocks.{i}.", D))
    sd.update({"encoder.norm.weight": torch.ones(D), "encoder.norm.bias": torch.zeros(D)})
    for i in range(DEC_DEPTH):
        sd.update(_block(f"decoder.blocks.{i}.", DEC))
    sd.update({"decoder.norm.weight": torch.ones(DEC), "decoder.norm.bias": torch.zeros(DEC),
               "decoder.head.weight": torch.randn(decoder_out, DEC) * 0.02,
               "decoder.head.bias": torch.zeros(decoder_out),
               "encoder_to_decoder.weight": torch.randn(DEC, D) * 0.02,
               "mask_token": torch.zeros(1, 1, DEC)})
    return sd


def sigma_pretrain_state_dict(teacher_dim: int = 256, prototypes: int = 16, memory: int = 8):
    sd = videomae_pretrain_state_dict(decoder_out=teacher_dim)
    sd["prototypes"] = torch.randn(prototypes, teacher_dim)
    sd["memory"] = torch.randn(memory, teacher_dim)
    for j, (o, i) in zip((0, 2, 4), ((teacher_dim, teacher_dim), (teacher_dim, teacher_dim),
                                     (memory, teacher_dim))):
        sd[f"memory_pred_head.{j}.weight"] = torch.randn(o, i) * 0.02
        sd[f"memory_pred_head.{j}.bias"] = torch.zeros(o)
    return sd


def mme_pretrain_state_dict(targets=(9 * 3 * 4, 6 * 2 * 4)):
    sd = {k: v for k, v in videomae_pretrain_state_dict().items() if k.startswith("encoder.")}
    for n, nc in enumerate(targets):
        for i in range(DEC_DEPTH):
            sd.update(_block(f"decoder.{n}.blocks.{i}.", DEC))
        sd.update({f"decoder.{n}.norm.weight": torch.ones(DEC), f"decoder.{n}.norm.bias": torch.zeros(DEC),
                   f"decoder.{n}.head.0.0.weight": torch.randn(512, DEC) * 0.02,
                   f"decoder.{n}.head.0.0.bias": torch.zeros(512),
                   f"decoder.{n}.head.0.2.weight": torch.randn(nc, 512) * 0.02,
                   f"decoder.{n}.head.0.2.bias": torch.zeros(nc),
                   f"encoder_to_decoder.{n}.weight": torch.randn(DEC, D) * 0.02})
    sd["mask_token"] = torch.zeros(1, 1, DEC)
    return sd


SIZE = dict(num_frames=4, img_size=16)


def _save(tmp_path, name, sd):
    path = tmp_path / name
    torch.save({"model": sd}, path)
    return path


def test_smile_pretraining_checkpoint_is_videomae_layout(tmp_path):
    path = _save(tmp_path, "smile.pth", videomae_pretrain_state_dict())
    model = load_model(path, decoder_num_heads=2, **SIZE)
    assert model.load_report.ok and model.load_report.source_kind == "pretrain"


def test_sigma_encoder_loads_and_its_feature_decoder_is_explained(tmp_path):
    sd = sigma_pretrain_state_dict()
    path = _save(tmp_path, "sigma.pth", sd)
    enc = load_model(path, task="encoder", **SIZE)
    rep = enc.load_report
    assert rep.ok
    assert {"prototypes", "memory", "memory_pred_head.0.weight"} <= set(rep.dropped)
    assert any("SIGMA" in n for n in rep.notes)
    w = sd["encoder.blocks.1.mlp.fc1.weight"]
    assert torch.equal(enc.state_dict()["blocks.1.mlp.fc1.weight"], w)
    with pytest.raises(ValueError, match="decoder predicts other targets .*SIGMA"):
        load_model(path, task="pretrain", decoder_num_heads=2, **SIZE)


def test_mme_encoder_loads_and_its_decoders_are_explained(tmp_path):
    sd = mme_pretrain_state_dict()
    path = _save(tmp_path, "mme.pth", sd)
    enc = load_model(path, task="encoder", **SIZE)
    assert enc.load_report.ok
    assert torch.equal(enc.state_dict()["blocks.3.attn.qkv.weight"],
                       sd["encoder.blocks.3.attn.qkv.weight"])
    clf = load_model(path, task="classify", num_classes=5, **SIZE)
    assert clf.load_report.ok
    with pytest.raises(ValueError, match="several decoders .*MME"):
        load_model(path, decoder_num_heads=2, **SIZE)  # what the file holds: pre-training
