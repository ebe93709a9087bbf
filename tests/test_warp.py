"""Known-answer tests for mgmae.flow.warp: backward warp, forward splatting, flow resizing."""

import numpy as np
import pytest
import torch

from mgmae.flow.warp import backward_warp, coords_grid, forward_splat, resize_flow


def _const_flow(n, h, w, dx, dy, dtype=torch.float32):
    f = torch.zeros(n, 2, h, w, dtype=dtype)
    f[:, 0], f[:, 1] = dx, dy
    return f


def _texture(h, w, seed=0, channels=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, channels, h + 8, w + 8, generator=g)
    k = torch.ones(channels, 1, 5, 5) / 25.0  # box blur -> smooth texture
    return torch.nn.functional.conv2d(x, k, groups=channels)[..., :h, :w].contiguous()


# ----------------------------------------------------------------- backward_warp

def test_backward_warp_integer_flow_is_exact_shift_with_border_mask():
    n, c, h, w = 2, 3, 9, 11
    x = torch.arange(n * c * h * w, dtype=torch.float32).reshape(n, c, h, w)
    dx, dy = 2, -1
    out, valid = backward_warp(x, _const_flow(n, h, w, dx, dy))
    assert out.shape == (n, c, h, w) and valid.shape == (n, 1, h, w) and valid.dtype == torch.bool
    # out[y, x] = x_dst[y + dy, x + dx] wherever that is inside the frame
    exp = torch.zeros_like(x)
    exp[:, :, 1:, : w - 2] = x[:, :, : h - 1, 2:]
    exp_valid = torch.zeros(n, 1, h, w, dtype=torch.bool)
    exp_valid[:, :, 1:, : w - 2] = True
    assert torch.equal(valid, exp_valid)
    assert torch.equal(out * valid, exp)  # exact, bit for bit
    assert torch.equal(out[~valid.expand_as(out)], torch.zeros(int((~valid).sum()) * c))  # zeros padding


def test_backward_warp_zero_flow_is_identity():
    x = torch.rand(2, 4, 7, 5)
    out, valid = backward_warp(x, torch.zeros(2, 2, 7, 5))
    assert torch.equal(out, x) and bool(valid.all())


def test_backward_warp_of_translation_by_true_flow_reproduces_source():
    # src shows big[y0:, x0:]; dst is the content moved by (+3, -2): dst = big[y0+2:, x0-3:]
    big = _texture(60, 60)
    y0, x0, h, w = 10, 10, 32, 32
    src = big[..., y0:y0 + h, x0:x0 + w]
    dst = big[..., y0 + 2:y0 + 2 + h, x0 - 3:x0 - 3 + w]
    out, valid = backward_warp(dst, _const_flow(1, h, w, 3.0, -2.0))
    assert torch.allclose(out[..., 2:-3, 0:-3], src[..., 2:-3, 0:-3], atol=1e-6)
    assert bool(valid[..., 2:, : w - 3].all()) and not bool(valid[..., :2, :].any())
    assert not bool(valid[..., :, w - 3:].any())


def test_backward_warp_fractional_is_bilinear():
    x = torch.tensor([[0.0, 10.0, 20.0], [30.0, 40.0, 50.0]]).view(1, 1, 2, 3)
    out, valid = backward_warp(x, _const_flow(1, 2, 3, 0.25, 0.5))
    # pixel (x=0, y=0) samples (0.25, 0.5): 0.5*(0.75*0 + 0.25*10) + 0.5*(0.75*30 + 0.25*40) = 17.5
    assert out[0, 0, 0, 0].item() == pytest.approx(17.5)
    assert bool(valid[0, 0, 0, 0]) and not bool(valid[0, 0, 1, 0])  # y = 1.5 is outside
    assert not bool(valid[0, 0, 0, 2])  # x = 2.25 is outside


def test_backward_warp_non_float_input_and_nonfinite_flow():
    m = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    m[0, 0, 1, 2] = True
    f = _const_flow(1, 4, 4, 1.0, 0.0)
    f[0, 0, 3, 3] = float("nan")
    out, valid = backward_warp(m, f)
    assert out.dtype == torch.float32 and out[0, 0, 1, 1] == 1.0
    assert not bool(valid[0, 0, 3, 3]) and out[0, 0, 3, 3] == 0.0 and torch.isfinite(out).all()


def test_backward_warp_padding_border():
    x = torch.arange(5, dtype=torch.float32).view(1, 1, 1, 5)
    out, valid = backward_warp(x, _const_flow(1, 1, 5, 2.0, 0.0), padding="border")
    assert out.flatten().tolist() == [2, 3, 4, 4, 4] and valid.flatten().tolist() == [1, 1, 1, 0, 0]


def test_backward_warp_shape_errors():
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        backward_warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        backward_warp(torch.zeros(1, 4, 4), torch.zeros(1, 2, 4, 4))
    with pytest.raises(ValueError, match="padding"):
        backward_warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), padding="edge")


# ----------------------------------------------------------------- forward_splat

def test_forward_splat_one_hot_integer_flow():
    x = torch.zeros(1, 1, 6, 7)
    x[0, 0, 2, 1] = 1.0  # (x=1, y=2)
    out, weight = forward_splat(x, _const_flow(1, 6, 7, 3.0, 2.0))
    assert out[0, 0, 4, 4] == 1.0 and out.sum() == 1.0  # moved to (x=4, y=4)
    # every source pixel lands on exactly one target; the ones pushed out of the frame are dropped
    exp_w = torch.zeros(1, 1, 6, 7)
    exp_w[..., 2:, 3:] = 1.0
    assert torch.equal(weight, exp_w)


def test_forward_splat_fractional_splits_bilinearly():
    x = torch.zeros(1, 2, 5, 5)
    x[0, :, 1, 1] = torch.tensor([1.0, 2.0])
    out, w = forward_splat(x, _const_flow(1, 5, 5, 0.25, 0.5), mode="sum")
    exp = torch.zeros(5, 5)
    exp[1, 1], exp[1, 2], exp[2, 1], exp[2, 2] = 0.75 * 0.5, 0.25 * 0.5, 0.75 * 0.5, 0.25 * 0.5
    assert torch.allclose(out[0, 0], exp) and torch.allclose(out[0, 1], 2 * exp)
    # weights: each target accumulates from its 4 source neighbours; in the interior they sum to 1
    assert torch.allclose(w[0, 0, 2:4, 2:4], torch.ones(2, 2))
    # average of a constant image is that constant wherever something landed
    avg, w2 = forward_splat(torch.full((1, 1, 5, 5), 7.0), _const_flow(1, 5, 5, 0.25, 0.5))
    assert torch.allclose(avg[w2 > 0], torch.tensor(7.0)) and torch.equal(w2, w)


def test_forward_splat_zero_flow_is_identity_both_modes():
    x = torch.rand(2, 3, 6, 5)
    for mode in ("average", "softmax"):
        out, w = forward_splat(x, torch.zeros(2, 2, 6, 5), mode=mode)
        assert torch.allclose(out, x) and torch.allclose(w, torch.ones(2, 1, 6, 5))


def test_forward_splat_holes_and_collisions():
    # two source pixels land on the same target: average mixes, softmax favours the larger metric
    x = torch.zeros(1, 1, 1, 4)
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 1.0, 3.0
    f = torch.zeros(1, 2, 1, 4)
    f[0, 0, 0, 0] = 1.0  # pixel 0 -> 1, pixel 1 stays at 1
    f[0, 0, 0, 2], f[0, 0, 0, 3] = 10.0, 10.0  # pushed out of the frame -> pixels 2, 3 become holes
    avg, w = forward_splat(x, f)
    assert avg.flatten().tolist() == [0.0, 2.0, 0.0, 0.0] and w.flatten().tolist() == [0.0, 2.0, 0.0, 0.0]
    metric = torch.tensor([0.0, 50.0, 0.0, 0.0]).view(1, 1, 1, 4)
    soft, _ = forward_splat(x, f, mode="softmax", metric=metric)
    assert soft[0, 0, 0, 1].item() == pytest.approx(3.0, abs=1e-6)
    with pytest.raises(ValueError, match="metric"):
        forward_splat(x, f, mode="softmax", metric=torch.zeros(1, 1, 1, 3))


def test_forward_then_backward_agree_on_translation():
    big = _texture(50, 50, seed=1, channels=1)
    src = big[..., 10:40, 10:40]
    dst = big[..., 8:38, 13:43]  # content moved by (-3, +2)
    fwd, w = forward_splat(src, _const_flow(1, 30, 30, -3.0, 2.0))
    inner = (w[0, 0] > 0)
    assert torch.allclose(fwd[0, 0][inner], dst[0, 0][inner], atol=1e-6)


# ----------------------------------------------------------------- resize_flow

def test_resize_flow_rescales_vectors():
    f = _const_flow(2, 8, 12, 1.5, -1.0)
    up = resize_flow(f, (16, 24))
    assert up.shape == (2, 2, 16, 24)
    assert torch.allclose(up[:, 0], torch.full((2, 16, 24), 3.0)) and torch.allclose(up[:, 1], torch.full((2, 16, 24), -2.0))
    down = resize_flow(f, 4)  # short side 4 -> (4, 6), aspect kept
    assert down.shape == (2, 2, 4, 6) and torch.allclose(down[:, 0], torch.tensor(0.75))
    anisotropic = resize_flow(f, (8, 6))
    assert torch.allclose(anisotropic[:, 0], torch.tensor(0.75)) and torch.allclose(anisotropic[:, 1], torch.tensor(-1.0))
    assert resize_flow(f[0], (16, 24)).shape == (2, 16, 24)
    assert resize_flow(f, (8, 12)) is f
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, H, W\)"):
        resize_flow(torch.zeros(1, 3, 4, 4), 2)


def test_resize_flow_of_a_linear_field_is_consistent_with_warping():
    # a zoom flow (p -> 1.1 p about the centre) resized x2 must still describe the same motion
    h, w = 16, 20
    p = coords_grid(1, h, w)
    c = torch.tensor([(w - 1) / 2, (h - 1) / 2]).view(1, 2, 1, 1)
    f = 0.1 * (p - c)
    up = resize_flow(f, (2 * h, 2 * w))
    p2 = coords_grid(1, 2 * h, 2 * w)
    c2 = torch.tensor([(2 * w - 1) / 2, (2 * h - 1) / 2]).view(1, 2, 1, 1)
    exp = 0.1 * (p2 - c2)
    assert torch.allclose(up[..., 2:-2, 2:-2], exp[..., 2:-2, 2:-2], atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float64])
def test_warp_keeps_float64(dtype):
    x = torch.rand(1, 1, 4, 4, dtype=dtype)
    out, _ = backward_warp(x, torch.zeros(1, 2, 4, 4, dtype=dtype))
    assert out.dtype == dtype and torch.equal(out, x)
    out2, _ = forward_splat(x, torch.zeros(1, 2, 4, 4, dtype=dtype))
    assert out2.dtype == dtype and np.allclose(out2.numpy(), x.numpy())


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_backward_warp_matches_grid_sample_on_fractional_flow(padding):
    # the exact 4-neighbour sampler agrees with grid_sample (pixel-exact normalisation) to float rounding
    g = torch.Generator().manual_seed(0)
    n, c, h, w = 2, 3, 13, 17
    x = torch.rand(n, c, h, w, generator=g)
    f = torch.randn(n, 2, h, w, generator=g) * 4  # some samples fall outside
    out, valid = backward_warp(x, f, padding=padding)
    p = coords_grid(n, h, w) + f
    grid = torch.stack([(2 * p[:, 0] + 1) / w - 1, (2 * p[:, 1] + 1) / h - 1], dim=-1)
    ref = torch.nn.functional.grid_sample(x, grid, padding_mode=padding, align_corners=False)
    assert torch.allclose(out, ref, atol=1e-5)
    assert (~valid).any() and valid.any()


def test_backward_warp_grid_sample_modes_follow_same_convention():
    x = torch.arange(30, dtype=torch.float32).view(1, 1, 5, 6)
    for mode, padding in (("nearest", "zeros"), ("bilinear", "reflection"), ("bicubic", "border")):
        out, valid = backward_warp(x, _const_flow(1, 5, 6, 1.0, 1.0), padding=padding, mode=mode)
        assert torch.allclose(out[..., :4, :5], x[..., 1:, 1:], atol=1e-3), mode
        f = _const_flow(1, 5, 6, 1.0, 1.0)
        f[0, 0, 0, 0] = float("nan")
        out, valid = backward_warp(x, f, padding=padding, mode=mode)
        assert torch.isfinite(out).all() and not valid[0, 0, 0, 0]


@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_backward_warp_numpy_path_is_bit_identical_to_torch(monkeypatch, padding):
    """Small float32 CPU inputs take the NumPy path (cheaper dispatch, e.g. the loader's 56 x 56
    mask maps); it must give exactly the floats of the torch path, NaN/inf/far flow included."""
    import mgmae.flow.warp as warp

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 9, 11, generator=g)
    flow = torch.randn(3, 2, 9, 11, generator=g) * 4  # fractional, some far outside
    flow[0, :, :3] = torch.randint(-3, 4, (2, 3, 11), generator=g).float()  # integer shifts
    flow[1, 0, 2, 2], flow[1, 1, 4, 4], flow[2, 0, 5, 5] = float("nan"), float("inf"), -float("inf")
    flow[2, :, 6:] = 0.0
    # sample points a float32 step either side of the validity bounds and of the frame's edges
    for k, edge in enumerate((-1e-3, 10 + 1e-3, 10.0, 0.0, -1.0, 11.0)):
        e = torch.tensor(edge, dtype=torch.float32)
        for j, v in enumerate((torch.nextafter(e, e - 1), e, torch.nextafter(e, e + 1))):
            flow[0, 0, 3 + k, j] = v - j  # absolute x = v at column j
            flow[1, 1, j, k] = v * 8 / 10 - j  # absolute y (height 9) near its bounds
    fast = warp.backward_warp(x, flow, padding=padding)
    monkeypatch.setattr(warp, "_NUMPY_MAX", 0)  # the torch path
    ref = warp.backward_warp(x, flow, padding=padding)
    assert torch.equal(fast[0], ref[0]) and torch.equal(fast[1], ref[1])
    assert fast[0].dtype == torch.float32 and fast[1].dtype == torch.bool
    m = (torch.rand(1, 1, 9, 11, generator=g) > 0.5)  # bool input: float32 out, both paths
    ref_m = warp.backward_warp(m, flow[:1])[0]
    monkeypatch.setattr(warp, "_NUMPY_MAX", 1 << 16)
    assert torch.equal(warp.backward_warp(m, flow[:1])[0], ref_m)
