"""VideoMAE V2's running-cell decoder mask: the pattern, and the loss it gives."""

from __future__ import annotations

import pytest
import torch

from mgmae.masking import build_masker
from mgmae.masking.running_cell import running_cell_mask, running_cell_patterns
from mgmae.models import create_model


def test_pattern_by_hand():
    """grid (2 slices, 2 x 4), ratio 0.5: the cell queue is [skip, skip, decode, decode]; slice t of
    start s reads it from s + t + 1 (V2's Cell: set_ptr(s), then run_cell() before each slice)."""
    p = running_cell_patterns((2, 2, 4), 0.5).int()
    # start 0, slice 0 reads [skip, decode, decode, skip] -> decoded [[0, 1], [1, 0]], tiled 1 x 2
    # start 0, slice 1 reads [decode, decode, skip, skip] -> decoded [[1, 1], [0, 0]]
    assert p[0].tolist() == [0, 1, 0, 1, 1, 0, 1, 0,
                             1, 1, 1, 1, 0, 0, 0, 0]
    # start 1 is start 0 one slice later
    assert p[1][:8].tolist() == p[0][8:].tolist()


@pytest.mark.parametrize("ratio,decoded", [(0.25, 3), (0.5, 2), (0.75, 1)])
def test_every_slice_and_position_decoded_at_the_same_rate(ratio, decoded):
    p = running_cell_patterns((8, 14, 14), ratio).reshape(4, 8, 14, 14)
    assert (p.sum((2, 3)) == 196 * decoded // 4).all()  # per slice: the same count
    assert (p[:, :4].sum(1) == decoded).all()  # per position, over 4 slices: `decoded` times
    masks = running_cell_mask((8, 14, 14), 6, ratio, torch.Generator().manual_seed(0))
    assert masks.shape == (6, 8 * 196) and masks.dtype == torch.bool


def test_bad_ratios_and_grids():
    with pytest.raises(ValueError, match="decoder_mask_ratio=0.1"):
        running_cell_patterns((8, 14, 14), 0.1)
    with pytest.raises(ValueError, match="decoder_mask_ratio=1.0"):
        running_cell_patterns((8, 14, 14), 1.0)
    with pytest.raises(ValueError, match="even sides"):
        running_cell_patterns((8, 7, 7), 0.5)


def _model(depth: int):
    torch.manual_seed(0)
    return create_model("mae_vit_nano_patch8", num_frames=4, img_size=16, decoder_depth=depth).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    clip = torch.randn(2, 3, 4, 16, 16, generator=g)
    mask = build_masker("tube", input_size=(4, 16, 16), patch_size=8, mask_ratio=0.5)(
        clip, generator=torch.Generator().manual_seed(2))  # [2, 8]: 2 of 4 hidden per slice
    return clip, mask


def test_without_a_decoder_mask_the_loss_is_the_plain_mae_loss():
    model = _model(1)
    clip, mask = _batch()
    with torch.no_grad():
        out = model(clip, mask)
    assert torch.equal(out.target, model.target(clip)[mask].reshape(2, 4, -1))
    with torch.no_grad():
        assert torch.equal(model(clip, mask, None).loss, out.loss)
    assert float(out.loss) == pytest.approx(float((out.pred - out.target).pow(2).mean()), rel=1e-6)


def test_dual_masking_loss_equals_a_direct_computation():
    """With no decoder blocks a prediction depends on its own token alone:
    pred(position n) = head(norm(mask_token + pos[n])). So the loss can be computed directly:
    the decoded positions (visible ones included, as in V2) get predictions, the loss is the mean
    over those the encoder mask hides."""
    model = _model(0)
    clip, mask = _batch()
    dec = running_cell_mask(model.grid, 2, 0.5, starts=torch.tensor([0, 3]))
    assert (dec & ~mask).any() and (dec & mask).any()  # some decoded cubes were visible
    with torch.no_grad():
        out = model(clip, mask, dec)
    target = model.target(clip)  # [2, N, P]
    with torch.no_grad():
        pred_all = model.decoder.head(model.decoder.norm(model.mask_token + model.pos_embed))[0]
    num = den = 0.0
    for b in range(2):
        for n in range(model.num_patches):
            if dec[b, n] and mask[b, n]:
                num += float((pred_all[n] - target[b, n]).pow(2).mean())
                den += 1
    assert float(out.loss) == pytest.approx(num / den, rel=1e-5)
    assert out.pred.shape == (2, int(dec[0].sum()), target.shape[-1])
    torch.testing.assert_close(out.pred[0], pred_all[dec[0]], rtol=0, atol=1e-6)


def test_decoder_sees_visible_tokens_and_every_decoded_position():
    model = _model(1)
    clip, mask = _batch()
    dec = running_cell_mask(model.grid, 2, 0.5, torch.Generator().manual_seed(0))
    seen = []
    model.decoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    model(clip, mask, dec)
    assert seen == [int((~mask[0]).sum() + dec[0].sum())]
    loss = model.train()(clip, mask, dec).loss
    loss.backward()
    assert model.mask_token.grad is not None and torch.isfinite(loss)


def test_starts_are_a_function_of_the_sample_not_the_batch():
    from mgmae.masking.running_cell import running_cell_starts

    idx = torch.tensor([5, 5, 9, 9, 2, 2])  # 3 videos x 2 views
    a = running_cell_starts(idx, 2, epoch=1, seed=0)
    assert torch.equal(a[2:4], running_cell_starts(idx[2:4], 2, 1, 0))  # another rank's share
    assert set(running_cell_starts(torch.arange(400), 1, 0, 0).tolist()) == {0, 1, 2, 3}
    assert not torch.equal(running_cell_starts(torch.arange(64), 1, 0, 0),
                           running_cell_starts(torch.arange(64), 1, 1, 0))  # new epoch, new draw


def test_pretraining_with_run_cell_resumes_exactly(tmp_path):
    from mgmae.config import load_config
    from mgmae.engine import checkpoint as ckpt
    from mgmae.engine.loop import Preempted
    from mgmae.engine.pretrain import pretrain

    base = ["data.synthetic_videos=16", "data.num_frames=4", "data.img_size=32", "train.batch_size=4",
            "train.warmup_epochs=1", "train.vis_clips=1", "train.baseline_clips=4",
            "train.tensorboard=false", "train.lr=1e-3", "masking.mask_ratio=0.75",
            "masking.name=tube", "train.num_workers=0", "train.max_steps=6",
            "masking.decoder_mask=run_cell", f"train.output_dir={tmp_path}"]
    full = pretrain(load_config(None, base + ["train.run_name=full"]))
    with pytest.raises(Preempted):
        pretrain(load_config(None, base + ["train.run_name=cut"]), stop_at_step=3)
    cut = pretrain(load_config(None, base + ["train.run_name=cut", "train.resume=auto"]))
    a = ckpt.load_checkpoint(full / "checkpoint-final.pth")["model"]
    b = ckpt.load_checkpoint(cut / "checkpoint-final.pth")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    none = pretrain(load_config(None, [x for x in base if "decoder_mask" not in x]
                                + ["train.run_name=none"]))
    c = ckpt.load_checkpoint(none / "checkpoint-final.pth")["model"]
    assert not all(torch.equal(a[k], c[k]) for k in a)  # the decoder mask changed the training
    with pytest.raises(ValueError, match="decoder_mask_ratio=0.1"):
        load_config(None, ["masking.decoder_mask=run_cell", "masking.decoder_mask_ratio=0.1"])
