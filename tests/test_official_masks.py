"""masking.official_compat: the official MGMAE code's masks with one switch, border included.

Known answers worked out by hand from the official rules (docs/design.md section 3): the flow is
scaled by (W - 1) / W, the one-pixel band outside the frame fades towards 0, only an exact 0 is a
hole (refilled from the initial map), the bump map is divided by its maximum."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mgmae.flow.warp import backward_warp, official_backward_warp
from mgmae.masking import build_masker


def official(**kw):
    opts = dict(input_size=(4, 16, 16), patch_size=8, tubelet_size=2, mask_ratio=0.75, flow=None,
                official_compat=True)
    opts.update(kw)
    return build_masker("motion_guided", **opts)


def ramp(h, w):
    """A hand-made map: value 1 + column (plus 100 x row), bilinear reproduces it exactly inside."""
    return (1.0 + torch.arange(w, dtype=torch.float32) + 100.0 * torch.arange(h, dtype=torch.float32)[:, None])


def shift(h, w, fx, fy=0.0):
    f = torch.zeros(1, 2, h, w)
    f[:, 0], f[:, 1] = fx, fy
    return f


# ------------------------------------------------------------------ the warp, one step
def test_integer_translation_leaving_the_frame_scaled_by_w_minus_1_over_w():
    """Flow +2 px on an 8-pixel row samples at j + 2 * 7/8 = j + 1.75: the ramp shifted by 1.75,
    then the faded band (column 6 reads 0.25 of column 7, its right tap is outside) and an exact 0
    (column 7: both taps outside). The corrected warp samples at j + 2."""
    x = ramp(1, 8)[None, None]  # [1, 1, 1, 8]: values 1..8
    got = official_backward_warp(x, shift(1, 8, 2.0))[0, 0, 0]
    want = torch.tensor([2.75, 3.75, 4.75, 5.75, 6.75, 7.75, 0.25 * 8, 0.0])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert got[7] == 0  # exactly: the official code's hole
    ours, valid = backward_warp(x, shift(1, 8, 2.0))
    assert ours[0, 0, 0, :6].tolist() == [3, 4, 5, 6, 7, 8] and valid[0, 0, 0].tolist() == [True] * 6 + [False] * 2


def test_fractional_translation_leaving_the_frame_on_the_left():
    """Flow -1.6 px on 8 pixels: -1.6 * 7/8 = -1.4. Column 0 (at -1.4) is an exact 0, column 1 (at
    -0.4) reads 0.6 of column 0 (faded), the rest the ramp at j - 1.4."""
    x = ramp(1, 8)[None, None]
    got = official_backward_warp(x, shift(1, 8, -1.6))[0, 0, 0]
    want = torch.tensor([0.0, 0.6 * 1, 1.6, 2.6, 3.6, 4.6, 5.6, 6.6])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert got[0] == 0


def test_each_axis_is_scaled_by_its_own_size():
    """x by (W - 1) / W, y by (H - 1) / H: on a 5 x 8 map, flow (8, 5) takes pixel (0, 0) to
    (7, 4), the opposite corner (exactly, up to the grid's rounding), and everything else out."""
    x = ramp(5, 8)[None, None]
    got = official_backward_warp(x, shift(5, 8, 8.0, 5.0))[0, 0]
    assert got[0, 0] == pytest.approx(float(x[0, 0, 4, 7]), abs=1e-3)
    # a flow of one frame width moves (W - 1) / W of it: a quarter of a pixel on W = 4
    y = torch.tensor([[[[0.0, 0.0, 0.0, 4.0]]]])
    assert official_backward_warp(y, shift(1, 4, 3.0))[0, 0, 0, 0] == pytest.approx(4 * 0.25, abs=1e-5)


# ------------------------------------------------------------------ the masker: both sides of the base
def test_propagation_fades_the_band_and_refills_only_exact_zeros_on_both_sides():
    """Base frame 2 of 4 (16 x 16 map). After it (t = 3, flow(3, 2) = +2 px, an integer flow):
    column 14 is in the band (at 15.875: 0.125 of column 15 = 2.0), column 15 is an exact 0 and
    takes the initial map's value (16). Before it (t = 1, the official direction flow(2, 1) =
    -1.5 px: -1.40625 after scaling): column 0 is an exact 0 -> refilled (1), column 1 is faded
    (0.59375 of column 0). With hole_filling=zero the holes stay 0. The corrected masker instead
    refills everything outside [0, 15] from the initial map."""
    m = official()
    assert m.map_stride == 1 and m.flow_pairs(2) == [(1, 0), (2, 1), (3, 2)]
    init = ramp(16, 16)[None]  # [1, 16, 16]
    flows = torch.cat([shift(16, 16, 0.0), shift(16, 16, -1.5), shift(16, 16, 2.0)]).unsqueeze(0)  # [1, 3, 2, H, W]
    maps = m.propagate(init, flows, 2)[0]  # [4, 16, 16]
    assert torch.equal(maps[2], init[0])
    row3, row1 = maps[3, 0], maps[1, 0]
    assert row3[14].item() == pytest.approx(0.125 * 16, abs=1e-4) and row3[15].item() == 16.0
    torch.testing.assert_close(row3[:14], 1 + torch.arange(14.0) + 1.875, atol=1e-4, rtol=0)
    assert row1[0].item() == 1.0 and row1[1].item() == pytest.approx(0.59375, abs=1e-5)
    torch.testing.assert_close(row1[2:], 1 + torch.arange(2.0, 16.0) - 1.40625, atol=1e-4, rtol=0)
    zero = official(hole_filling="zero").propagate(init, flows, 2)[0]
    assert zero[3, 0, 15].item() == 0.0 and zero[1, 0, 0].item() == 0.0
    assert zero[3, 0, 14].item() == pytest.approx(2.0, abs=1e-4)
    corrected = build_masker("motion_guided", input_size=(4, 16, 16), patch_size=8, mask_ratio=0.75,
                             flow=None, map_stride=1, direction="official")
    c = corrected.propagate(init, flows, 2)[0]
    assert c[3, 0, 14].item() == 15.0 and c[3, 0, 13].item() == 16.0  # at 16: outside -> the initial map
    assert c[1, 0, 1].item() == 2.0 and c[1, 0, 2].item() == pytest.approx(1.5)  # at -0.5: outside


def test_the_loader_path_gives_the_same_maps(monkeypatch):
    """Small CPU maps take the torch path in the official mode (not the compiled kernel): the same
    values whatever the size threshold."""
    import mgmae.flow.warp as warp

    m = official(input_size=(8, 32, 32), base_frame="middle")
    g = torch.Generator().manual_seed(0)
    init = m.initial_map(2, 32, 32, g)
    flows = torch.randn(2, 7, 2, 32, 32, generator=g) * 3
    a = m.propagate(init, flows, 4)
    monkeypatch.setattr(warp, "_NUMPY_MAX", 0)
    assert torch.equal(a, m.propagate(init, flows, 4))


# ------------------------------------------------------------------ initial map, count, direction
def test_the_bump_map_is_the_official_formula_divided_by_its_maximum():
    m = official(input_size=(4, 64, 64), patch_size=16)
    idx = torch.tensor([[0, 5, 10], [3, 6, 15]])  # [B, k] patches of a 4 x 4 grid
    got = m.bump_map(idx, 64, 64)
    rows = torch.linspace(0, 63, 64)[:, None]
    cols = torch.linspace(0, 63, 64)[None, :]
    for b in range(2):
        ref = torch.zeros(64, 64)
        for i in idx[b].tolist():
            my, mx = (i // 4) * 16 + 7.5, (i % 4) * 16 + 7.5
            ref = torch.maximum(ref, torch.exp(-(((rows - my) / 16) ** 2 + ((cols - mx) / 16) ** 2)))
        assert torch.equal(got[b], ref / ref.max())
        assert got[b].max() == 1.0
    # token_rand / pixel_rand hold 1e-8 for 0, so the exact-zero test finds only the warp's holes
    tok = official(init_map="token_rand").initial_map(1, 16, 16, torch.Generator().manual_seed(0))
    assert tok.min() == pytest.approx(1e-8) and tok.max() == 1.0


def test_the_switch_alone_sets_every_official_choice():
    m = build_masker("motion_guided", input_size=(16, 224, 224), flow=None, official_compat=True)
    assert (m.k, m.k_map, m.map_stride, m.exposure, m.direction) == (19, 20, 1, "official", "official")
    assert m.gauss_sigma == 16 / math.sqrt(2)
    assert m.flow_pairs(8)[:8] == [(t + 1, t) for t in range(8)]  # before the base: flow(t+1, t)
    assert m.flow_pairs(8)[8:] == [(t, t - 1) for t in range(9, 16)]
    both = build_masker("motion_guided", input_size=(16, 224, 224), flow=None, official_compat=True,
                        direction="corrected")  # the official masks but the direction
    assert both.flow_pairs(8)[:8] == [(t, t + 1) for t in range(8)] and both.k == 19
    assert "official masks, corrected direction" in repr(both)
    default = build_masker("motion_guided", input_size=(16, 224, 224), flow=None)
    assert (default.k, default.map_stride, default.exposure, default.direction) == (20, 2, "scaled", "corrected")
    alone = build_masker("motion_guided", input_size=(16, 224, 224), flow=None, direction="official")
    assert alone.flow_pairs(8)[:8] == [(t + 1, t) for t in range(8)] and alone.k == 20 and not alone.official_compat
    clip = torch.randn(2, 3, 16, 224, 224)
    mask = build_masker("motion_guided", input_size=(16, 224, 224), flow="zero", official_compat=True)(
        clip, generator=torch.Generator().manual_seed(0))
    assert ((~mask).reshape(2, 8, 196).sum(-1) == 19).all()


@pytest.mark.parametrize("key,value", [("visible_count", "tube"), ("exposure", "scaled"), ("map_stride", 2),
                                       ("gauss_sigma", 11.31), ("warp", "forward")])
def test_a_contradicting_option_names_both(key, value):
    with pytest.raises(ValueError, match=f"{key}=.*contradicts official_compat=True") as e:
        official(**{key: value})
    assert "\n" not in str(e.value)


def test_redundant_options_are_accepted():
    m = official(input_size=(4, 32, 32), patch_size=16, visible_count="official", exposure="official",
                 map_stride=1, gauss_sigma=16 / math.sqrt(2))
    assert m.k == int(4 * 0.25)


@pytest.mark.parametrize("override", ["masking.visible_count=tube", "masking.visible_count=ours",
                                      "masking.exposure=scaled", "masking.map_stride=2",
                                      "masking.gauss_sigma=11.31", "masking.warp=forward"])
def test_config_rejects_the_switch_with_a_contradicting_key_in_one_line(override):
    from mgmae.config import load_config

    with pytest.raises(ValueError) as e:
        load_config("pretrain_vit_base_ssv2", ["masking.official_compat=true", override])
    msg = str(e.value)
    assert "\n" not in msg and override.split("=")[0] in msg and "masking.official_compat" in msg


def test_config_switch_builds_the_official_masker():
    from mgmae.config import load_config, validate
    from mgmae.engine.pretrain import masker_from_config

    for extra in ([], ["flow.name=codec", "masking.where=loader"]):
        cfg = load_config("pretrain_vit_base_ssv2", ["masking.official_compat=true", *extra])
        validate(cfg)
        m = masker_from_config(cfg, 16)
        assert m.official_compat and (m.k, m.map_stride, m.direction) == (19, 1, "official")
    cfg = load_config("pretrain_vit_base_ssv2", ["masking.direction=official"])
    validate(cfg)
    m = masker_from_config(cfg, 16)
    assert not m.official_compat and m.direction == "official" and (m.k, m.map_stride) == (20, 2)


# ------------------------------------------------------------------ against the real official code
@pytest.mark.skipif(not os.environ.get("MGMAE_OFFICIAL"),
                    reason="set MGMAE_OFFICIAL to a checkout of MCG-NJU/MGMAE (needs einops)")
def test_the_official_code_gives_the_same_masks():
    """bench/official_masks.py on small clips: every differing token a near tie (exit 0)."""
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "bench" / "official_masks.py"), "--official",
                          os.environ["MGMAE_OFFICIAL"], "--clips", "2", "--size", "64", "--frames", "8",
                          "--seeds", "1"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
