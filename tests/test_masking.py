"""Random and tube maskers: shapes, exact counts, tube structure, determinism, uniformity, errors."""

from __future__ import annotations

import pytest
import torch

from mgmae.masking import build_masker, num_visible_per_slice

SMALL = dict(input_size=(8, 64, 64), patch_size=16, tubelet_size=2)  # grid (4, 4, 4), N = 64
SMALL_GRID = (4, 4, 4)


def make(name, mask_ratio=0.75, seed=None, **kw):
    return build_masker(name, **{**SMALL, **kw}, mask_ratio=mask_ratio, seed=seed)


# ----------------------------------------------------------------------------- shapes and counts

@pytest.mark.parametrize("name", ["random", "tube"])
def test_shapes_and_dtype_single_and_batch(name):
    masker = make(name, seed=0)
    single = masker(torch.zeros(3, 8, 64, 64))
    batch = masker(torch.zeros(5, 3, 8, 64, 64))
    by_size = masker(batch_size=4)
    assert single.shape == (64,) and single.dtype == torch.bool
    assert batch.shape == (5, 64) and batch.dtype == torch.bool
    assert by_size.shape == (4, 64) and by_size.dtype == torch.bool


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9, 0.95, 0.3])
def test_random_hides_exactly_int_n_ratio(ratio):
    masker = build_masker("random", input_size=(16, 224, 224), patch_size=16, tubelet_size=2,
                          mask_ratio=ratio, seed=0)
    n = 8 * 14 * 14
    mask = masker(batch_size=6)
    assert mask.sum(1).tolist() == [int(n * ratio + 1e-9)] * 6
    assert masker.num_masked == int(n * ratio + 1e-9)


def test_tube_vit_b_default_keeps_20_of_196_per_slice():
    masker = build_masker("tube", input_size=(16, 224, 224), patch_size=16, tubelet_size=2,
                          mask_ratio=0.9, seed=0)
    mask = masker(torch.zeros(3, 16, 224, 224))
    assert mask.shape == (1568,)
    visible_per_slice = (~mask).view(8, 196).sum(1)
    assert visible_per_slice.tolist() == [20] * 8
    assert masker.num_masked == 1568 - 160 == int(mask.sum())


@pytest.mark.parametrize("hw,ratio,visible", [(196, 0.9, 20), (196, 0.75, 49), (16, 0.75, 4),
                                              (16, 0.9, 2), (64, 0.5, 32), (49, 0.9, 5)])
def test_num_visible_per_slice(hw, ratio, visible):
    assert num_visible_per_slice(hw, ratio) == visible == hw - int(hw * ratio + 1e-9)


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_tube_same_visible_set_in_every_slice(ratio):
    masker = make("tube", mask_ratio=ratio, seed=0)
    mask = masker(batch_size=8).view(8, *SMALL_GRID)  # [B, t, h, w]
    k = num_visible_per_slice(16, ratio)
    for b in range(8):
        for t in range(SMALL_GRID[0]):
            assert torch.equal(mask[b, t], mask[b, 0])
        assert int((~mask[b, 0]).sum()) == k
    assert masker.num_masked == 64 - 4 * k


# ----------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("name", ["random", "tube"])
def test_deterministic_under_seed(name):
    a, b = make(name, seed=123), make(name, seed=123)
    seq_a = [a(batch_size=3) for _ in range(3)]
    seq_b = [b(batch_size=3) for _ in range(3)]
    for x, y in zip(seq_a, seq_b):
        assert torch.equal(x, y)
    assert not torch.equal(seq_a[0], seq_a[1])  # the stream advances between calls
    assert not torch.equal(seq_a[0], make(name, seed=124)(batch_size=3))


@pytest.mark.parametrize("name", ["random", "tube"])
def test_deterministic_under_explicit_generator(name):
    masker = make(name, seed=None)
    clip = torch.zeros(4, 3, 8, 64, 64)
    a = masker(clip, generator=torch.Generator().manual_seed(7))
    b = masker(clip, generator=torch.Generator().manual_seed(7))
    c = masker(clip, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # an explicit generator wins over the masker's own seed
    seeded = make(name, seed=0)
    assert torch.equal(seeded(clip, generator=torch.Generator().manual_seed(7)), a)


@pytest.mark.parametrize("name", ["random", "tube"])
def test_rows_in_a_batch_differ(name):
    mask = make(name, seed=0)(batch_size=8)
    rows = {tuple(r.tolist()) for r in mask}
    assert len(rows) == 8


# ----------------------------------------------------------------------------- uniformity

@pytest.mark.parametrize("name", ["random", "tube"])
def test_visible_positions_roughly_uniform(name):
    draws = 4000
    mask = make(name, mask_ratio=0.75, seed=0)(batch_size=draws)  # [draws, 64]
    freq = (~mask).float().mean(0)  # visible frequency per token, expected 0.25
    sigma = (0.25 * 0.75 / draws) ** 0.5  # ~0.0068
    assert (freq - 0.25).abs().max() < 5 * sigma, freq
    # and no structure in (t, h, w): per-slice and per-row/column sums are balanced as well
    f = freq.view(*SMALL_GRID)
    for dim in range(3):
        other = [d for d in range(3) if d != dim]
        marg = f.mean(dim=other)
        assert (marg - 0.25).abs().max() < 3 * sigma, (dim, marg)


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
@pytest.mark.parametrize("name", ["random", "tube"])
def test_mask_ratio_outside_open_interval(name, ratio):
    with pytest.raises(ValueError, match="mask_ratio") as e:
        make(name, mask_ratio=ratio)
    assert str(ratio) in str(e.value)


@pytest.mark.parametrize("kw,needles", [
    (dict(input_size=(8, 60, 64)), ["60", "patch_size=16"]),
    (dict(input_size=(8, 64, 72)), ["72", "patch_size=16"]),
    (dict(input_size=(7, 64, 64)), ["num_frames=7", "tubelet_size=2"]),
    (dict(input_size=(8, 64, 64), tubelet_size=3), ["num_frames=8", "tubelet_size=3"]),
    (dict(input_size=(64, 64)), ["(64, 64)"]),
])
@pytest.mark.parametrize("name", ["random", "tube"])
def test_bad_sizes(name, kw, needles):
    with pytest.raises(ValueError) as e:
        build_masker(name, **{**SMALL, **kw})
    for s in needles:
        assert s in str(e.value)


@pytest.mark.parametrize("name", ["random", "tube"])
def test_clip_of_the_wrong_size_or_rank(name):
    masker = make(name, seed=0)
    with pytest.raises(ValueError, match=r"\(8, 64, 64\)"):
        masker(torch.zeros(3, 8, 32, 32))
    with pytest.raises(ValueError, match="C, T, H, W"):
        masker(torch.zeros(8, 64, 64))
    with pytest.raises(ValueError):
        masker()


@pytest.mark.parametrize("typo,suggestion", [("tub", "tube"), ("randon", "random"),
                                             ("motion_guide", "motion_guided")])
def test_unknown_masker_suggests_closest(typo, suggestion):
    with pytest.raises(ValueError, match="unknown masker") as e:
        build_masker(typo, **SMALL)
    assert f"Did you mean {suggestion!r}" in str(e.value)
