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
