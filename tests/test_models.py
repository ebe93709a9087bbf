"""Models: token order, mask convention, parameter counts vs published/HF, overfitting, bad input."""

from __future__ import annotations

import importlib.util
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from mgmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from mgmae.masking import build_masker
from mgmae.models import create_model, list_models, param_count
from mgmae.models.mae import patchify, unpatchify

HAS_HF = importlib.util.find_spec("transformers") is not None
needs_hf = pytest.mark.skipif(not HAS_HF, reason="transformers is not installed (pip install mgmae[hf])")

# the tiny test geometry: 16 frames at 32x32, 8x8 patches, tubelet 2 -> grid (8, 4, 4), N = 128
T, S, P, TS = 16, 32, 8, 2
GRID = (T // TS, S // P, S // P)
N = GRID[0] * GRID[1] * GRID[2]


def nano(**kw):
    return create_model("mae_vit_nano_patch8", num_frames=T, img_size=S, **kw)


def rand_clip(b=2, seed=0):
    return torch.randn(b, 3, T, S, S, generator=torch.Generator().manual_seed(seed))


def tube_mask(b=2, ratio=0.75, seed=0):
    masker = build_masker("tube", input_size=(T, S, S), patch_size=P, tubelet_size=TS,
                          mask_ratio=ratio, seed=seed)
    return masker(batch_size=b)


def cube(x: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """Pixels of cube (t, h, w) of a clip (C, T, H, W), flattened in (dt, dy, dx, c) order."""
    c = x[:, t * TS:(t + 1) * TS, h * P:(h + 1) * P, w * P:(w + 1) * P]  # [C, ts, p, p]
    return c.permute(1, 2, 3, 0).reshape(-1)


def token_index(t: int, h: int, w: int) -> int:
    return t * GRID[1] * GRID[2] + h * GRID[2] + w


def unravel(i: int) -> tuple[int, int, int]:
    return i // (GRID[1] * GRID[2]), (i // GRID[2]) % GRID[1], i % GRID[2]


# ----------------------------------------------------------------------------- token order

CUBES = [(0, 0, 0), (3, 1, 2), (7, 3, 0), (5, 0, 3), (2, 2, 1)]  # h != w catches a transpose


@pytest.mark.parametrize("t,h,w", CUBES)
def test_patch_embed_token_order(t, h, w):
    model = nano()
    proj = model.encoder.patch_embed.proj
    with torch.no_grad():
        proj.weight.fill_(1.0)  # every output channel = sum over the cube
        proj.bias.zero_()
    clip = torch.zeros(1, 3, T, S, S)
    clip[:, :, t * TS:(t + 1) * TS, h * P:(h + 1) * P, w * P:(w + 1) * P] = 1.0
    with torch.no_grad():
        tokens = model.encoder.patch_embed(clip)  # [1, N, D]
    assert tokens.shape == (1, N, proj.out_channels)
    lit = (tokens.abs().sum(-1) > 0)[0].nonzero().flatten().tolist()
    assert lit == [token_index(t, h, w)]
    assert torch.allclose(tokens[0, token_index(t, h, w)], torch.full((proj.out_channels,), 3.0 * TS * P * P))


@pytest.mark.parametrize("t,h,w", CUBES)
def test_patchify_token_order_and_pixel_layout(t, h, w):
    clip = torch.zeros(1, 3, T, S, S)
    clip[:, :, t * TS:(t + 1) * TS, h * P:(h + 1) * P, w * P:(w + 1) * P] = torch.rand(3, TS, P, P) + 1
    patches = patchify(clip, P, TS)  # [1, N, ts*p*p*3]
    assert patches.shape == (1, N, TS * P * P * 3)
    lit = (patches.abs().sum(-1) > 0)[0].nonzero().flatten().tolist()
    assert lit == [token_index(t, h, w)]
    assert torch.equal(patches[0, token_index(t, h, w)], cube(clip[0], t, h, w))


@needs_hf
def test_patch_embed_matches_hf_token_order():
    from transformers import VideoMAEConfig
    from transformers.models.videomae.modeling_videomae import VideoMAEPatchEmbeddings

    model = nano()
    ours = model.encoder.patch_embed
    cfg = VideoMAEConfig(image_size=S, patch_size=P, num_frames=T, tubelet_size=TS,
                         hidden_size=ours.proj.out_channels)
    hf = VideoMAEPatchEmbeddings(cfg)
    hf.projection.load_state_dict(ours.proj.state_dict())
    clip = rand_clip()
    with torch.no_grad():
        a = ours(clip)
        b = hf(clip.permute(0, 2, 1, 3, 4).contiguous())  # HF takes (B, T, C, H, W)
    torch.testing.assert_close(a, b)


def test_patchify_unpatchify_round_trip():
    x = torch.randn(2, 3, 6, 24, 40)  # non-square and odd grid: (3, 3, 5)
    p = patchify(x, 8, 2)
    assert p.shape == (2, 3 * 3 * 5, 2 * 8 * 8 * 3)
    assert torch.equal(unpatchify(p, (3, 3, 5), 8, 2), x)
    tok = torch.randn(2, 45, 384)
    assert torch.equal(patchify(unpatchify(tok, (3, 3, 5), 8, 2), 8, 2), tok)


# ----------------------------------------------------------------------------- mask convention

@pytest.mark.parametrize("norm_pix", [False, True])
def test_target_rows_are_the_hidden_cubes(norm_pix):
    model = nano(norm_pix_loss=norm_pix).eval()
    clip, mask = rand_clip(), tube_mask()
    with torch.no_grad():
        out = model(clip, mask)
    n_mask = int(mask[0].sum())
    assert out.pred.shape == out.target.shape == (2, n_mask, TS * P * P * 3)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    for b in range(2):
        video = clip[b] * std + mean  # [C, T, H, W] in [0, 1]
        hidden = mask[b].nonzero().flatten().tolist()  # ascending token order
        rows = []
        for i in hidden:
            px = cube(video, *unravel(i))  # [(dt, dy, dx, c)]
            if norm_pix:
                px = px.view(-1, 3)  # per-channel statistics over the cube
                px = (px - px.mean(0)) / (px.std(0, unbiased=True) + 1e-6)
                px = px.reshape(-1)
            rows.append(px)
        torch.testing.assert_close(out.target[b], torch.stack(rows), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.loss, F.mse_loss(out.pred, out.target))


def _normalized(rgb: torch.Tensor) -> torch.Tensor:
    """A ``[0, 1]`` RGB clip ``(B, 3, T, H, W)`` in the model's ImageNet-normalized input space."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1, 1)
    return (rgb - mean) / std


def test_baseline_loss_raw_pixels_is_the_mean_colour_predictor():
    """Visible cubes of colour a, hidden cubes of colour b: the trivial predictor (each clip's mean
    visible colour) scores mean((b - a)^2); per clip, not over the batch."""
    model = nano(norm_pix_loss=False)
    mask = tube_mask()  # [2, N]
    a = torch.tensor([[0.2, 0.4, 0.6], [0.9, 0.1, 0.5]])  # visible colour per clip
    b = torch.tensor([[0.3, 0.1, 0.6], [0.5, 0.5, 0.5]])  # hidden colour per clip
    rgb = torch.empty(2, 3, T, S, S)
    for i in range(2):
        tokens = torch.where(mask[i].view(N, 1), b[i].repeat(TS * P * P), a[i].repeat(TS * P * P))
        rgb[i] = unpatchify(tokens[None], GRID, P, TS)[0]
    expected = ((b - a) ** 2).mean()
    torch.testing.assert_close(model.baseline_loss(_normalized(rgb), mask), expected, rtol=1e-5, atol=1e-6)
    # a clip of one colour: the trivial predictor is exact
    flat = torch.ones(2, 3, T, S, S) * 0.25
    assert float(model.baseline_loss(_normalized(flat), mask)) < 1e-10


def test_baseline_loss_norm_pix_is_the_zero_predictor():
    model = nano(norm_pix_loss=True)
    clip, mask = rand_clip(), tube_mask()
    with torch.no_grad():
        target = model(clip, mask).target
    torch.testing.assert_close(model.baseline_loss(clip, mask), target.pow(2).mean())
    # per-cube standardised with the unbiased std: the mean square is (n - 1) / n, n = ts*p*p pixels
    n = TS * P * P
    torch.testing.assert_close(model.baseline_loss(clip, mask), torch.tensor((n - 1) / n), rtol=1e-4, atol=1e-4)


def _clip_from_cube_colours(colours: torch.Tensor) -> torch.Tensor:
    """A normalized clip ``(B, 3, T, S, S)`` whose cubes are flat, of colours ``(B, N, 3)``."""
    tokens = colours.repeat(1, 1, TS * P * P)  # [B, N, ts*p*p*3] in (dt, dy, dx, c) order
    return _normalized(unpatchify(tokens, GRID, P, TS))


def test_smoothing_loss_is_exact_on_slices_of_one_colour():
    """Each temporal slice flat, a different colour per slice: the same-slice smoothing predictor is
    exact, the clip-mean predictor is not."""
    model = nano(norm_pix_loss=False)
    mask = tube_mask()
    per_slice = torch.rand(2, GRID[0], 3, generator=torch.Generator().manual_seed(1))  # [B, t, 3]
    colours = per_slice.repeat_interleave(GRID[1] * GRID[2], dim=1)  # [B, N, 3]
    clip = _clip_from_cube_colours(colours)
    assert float(model.smoothing_loss(clip, mask)) < 1e-10
    assert float(model.baseline_loss(clip, mask)) > 1e-3


def test_smoothing_loss_hand_computed():
    """One slice (the first) wholly hidden: its cubes get the clip's mean visible colour. In the
    other slices a hidden cube gets the softmax(-d^2 / 2 sigma^2)-weighted mean of the visible
    cubes' colours of its slice; the best sigma is kept."""
    model = nano(norm_pix_loss=False)
    g = torch.Generator().manual_seed(2)
    colours = torch.rand(1, N, 3, generator=g)
    per = GRID[1] * GRID[2]
    mask = torch.zeros(1, N, dtype=torch.bool)
    mask[0, :per] = True  # slice 0 hidden
    for t in range(1, GRID[0]):  # slices 1..: cube 0 hidden, cube 5 hidden
        mask[0, t * per] = mask[0, t * per + 5] = True
    clip = _clip_from_cube_colours(colours)
    ys, xs = torch.meshgrid(torch.arange(GRID[1]), torch.arange(GRID[2]), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1).float()  # [per, 2]
    vis_mean = colours[0][~mask[0]].mean(0)
    for sigmas in [(0.75,), (3.0,), (0.75, 1.5, 3.0)]:
        losses = []
        for sigma in sigmas:
            err = []
            for i in mask[0].nonzero()[:, 0].tolist():
                t, j = divmod(i, per)
                if t == 0:
                    pred = vis_mean
                else:
                    vis = [k for k in range(per) if not mask[0, t * per + k]]
                    d2 = ((pos[vis] - pos[j]) ** 2).sum(1)
                    wts = torch.softmax(-d2 / (2 * sigma**2), 0)
                    pred = (wts[:, None] * colours[0, [t * per + k for k in vis]]).sum(0)
                err.append(((colours[0, i] - pred) ** 2).mean())
            losses.append(torch.stack(err).mean())
        expected = min(losses)
        torch.testing.assert_close(model.smoothing_loss(clip, mask, sigmas=sigmas), expected,
                                   rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="norm-pix"):
        nano(norm_pix_loss=True).smoothing_loss(clip, mask)


def test_baseline_check_reports_ratio():
    from mgmae.engine.pretrain import baseline_check

    model = nano(norm_pix_loss=False)
    clip, mask = rand_clip(b=3).clamp(-2, 2), tube_mask(b=3)
    res = baseline_check(model, (clip, mask), chunk=2)  # chunks of 2 and 1 clips
    with torch.no_grad():
        loss, base = float(model(clip, mask).loss), float(model.baseline_loss(clip, mask))
    assert res["check_clips"] == 3
    assert res["check_loss"] == pytest.approx(loss, rel=1e-5)
    assert res["baseline_loss"] == pytest.approx(base, rel=1e-5)
    assert res["baseline_ratio"] == pytest.approx(loss / base, rel=1e-5)
    assert "each clip's mean visible colour" in res["baseline_message"]
    smooth = float(model.smoothing_loss(clip, mask))
    assert res["smoothing_loss"] == pytest.approx(smooth, rel=1e-5)
    assert res["smoothing_ratio"] == pytest.approx(loss / smooth, rel=1e-5)
    assert "spatial smoothing" in res["baseline_message"]
    assert baseline_check(model, None) == {}
    norm = baseline_check(nano(norm_pix_loss=True), (clip, mask))
    assert "smoothing_loss" not in norm and "zeros" in norm["baseline_message"]


def test_token_statistics_hand_computed():
    """No blocks, a patch embedding that outputs the same vector v everywhere: the output tokens are
    v + position, so every statistic follows from v and the fixed table by hand."""
    from mgmae.models.vit import token_statistics

    enc = create_model("vit_nano_patch8", num_frames=T, img_size=S)
    enc.blocks = torch.nn.ModuleList()
    v = torch.linspace(-3.0, 5.0, enc.embed_dim)
    with torch.no_grad():
        enc.patch_embed.proj.weight.zero_()
        enc.patch_embed.proj.bias.copy_(v)
    enc.train()
    stats = token_statistics(enc, rand_clip(b=2))
    assert enc.training  # mode restored
    pos = enc.pos_embed[0]  # [N, D]
    out = v + pos  # [N, D]: the same for both clips
    assert stats["patch"] == pytest.approx(v.norm().item(), rel=1e-5)
    assert stats["pos"] == pytest.approx(pos.norm(dim=-1).mean().item(), rel=1e-5)
    assert stats["token"] == pytest.approx(out.norm(dim=-1).mean().item(), rel=1e-5)
    assert stats["common"] == pytest.approx(out.mean(0).norm().item(), rel=1e-5)
    within = (pos - pos.mean(0)).norm(dim=-1).mean().item()
    assert stats["within"] == pytest.approx(within, rel=1e-4)
    assert stats["spread"] == pytest.approx(within / out.norm(dim=-1).mean().item(), rel=1e-4)


def test_encoder_check_flags_a_shared_vector_and_keeps_the_random_state():
    from mgmae.engine.loop import encoder_check

    clips = rand_clip(b=2)
    enc = nano().encoder
    state = torch.get_rng_state()
    healthy = encoder_check(enc, clips)
    assert torch.equal(torch.get_rng_state(), state)  # the random copy does not move the generator
    assert healthy["encoder_random_spread"] == pytest.approx(healthy["encoder_spread"], rel=0.5)
    assert healthy["encoder_spread"] > 0.2 and "little differs" not in healthy["encoder_message"]
    with torch.no_grad():  # the last block adds one large vector to every token: 99% shared
        enc.blocks[-1].mlp.fc2.bias.fill_(50.0)
    sick = encoder_check(enc, clips)
    assert sick["encoder_common"] / sick["encoder_token"] > 0.95 and sick["encoder_spread"] < 0.1
    assert "little differs from token to token" in sick["encoder_message"]
    assert sick["encoder_random_spread"] == pytest.approx(healthy["encoder_random_spread"], rel=1e-5)


def test_sincos_3d_table_known_values():
    """Separable table: channels [0, 44) code t, [44, 86) code h, [86, 128) code w (dim 128), each
    part sin(x * w_k) then cos(x * w_k) with w_k = 10000^(-k / (part / 2))."""
    from mgmae.models.vit import position_table, sincos_3d_table

    grid, dim = (3, 4, 5), 128
    tab = sincos_3d_table(grid, dim)[0]  # [60, 128]
    assert tab.shape == (60, 128)
    parts = {"t": (0, 44), "h": (44, 86), "w": (86, 128)}

    def code(x: float, width: int) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(width // 2, dtype=torch.float64) / (width / 2))
        return torch.cat([torch.sin(x * omega), torch.cos(x * omega)]).float()

    for t, h, w in [(0, 0, 0), (2, 3, 4), (1, 0, 3)]:
        row = tab[(t * 4 + h) * 5 + w]
        for name, x in (("t", t), ("h", h), ("w", w)):
            a, b = parts[name]
            torch.testing.assert_close(row[a:b], code(x, b - a), atol=1e-6, rtol=0)
    # tokens in the same slice share the t part; moving one column changes only the w part
    a, b = (t * 20 + 7 for t in (0, 2))
    assert not torch.equal(tab[a, :44], tab[b, :44]) and torch.equal(tab[a, 44:], tab[b, 44:])
    assert torch.equal(tab[7, :86], tab[8, :86]) and not torch.equal(tab[7, 86:], tab[8, 86:])
    assert torch.equal(position_table("sincos_1d", grid, dim), sinusoid_1d(60, dim))
    with pytest.raises(ValueError, match="sincos_1d, sincos_3d"):
        position_table("learned", grid, dim)


def sinusoid_1d(n: int, dim: int) -> torch.Tensor:
    from mgmae.models.vit import sinusoid_table

    return sinusoid_table(n, dim)


def test_pos_embed_option_reaches_encoder_decoder_and_classifier():
    from mgmae.models.vit import sincos_3d_table

    mae = nano(pos_embed="sincos_3d")
    assert torch.equal(mae.encoder.pos_embed, sincos_3d_table(GRID, 128))
    assert torch.equal(mae.pos_embed, sincos_3d_table(GRID, 64))  # decoder width
    assert mae.encoder.pos_embed_type == "sincos_3d"
    default = nano()
    assert default.encoder.pos_embed_type == "sincos_1d"
    assert not torch.equal(default.encoder.pos_embed, mae.encoder.pos_embed)
    clf = create_model("vit_nano_patch8", num_frames=T, img_size=S, num_classes=3, pos_embed="sincos_3d")
    assert torch.equal(clf.pos_embed, sincos_3d_table(GRID, 128))
    # the table changes what the model computes (positions are not a no-op)
    clip, mask = rand_clip(), tube_mask()
    default.load_state_dict(mae.state_dict())
    with torch.no_grad():
        assert not torch.allclose(default(clip, mask).pred, mae(clip, mask).pred)


def test_masked_pixels_do_not_influence_prediction():
    model = nano().eval()
    clip, mask = rand_clip(), tube_mask()
    pixel_mask = unpatchify(mask[..., None].float().expand(-1, -1, TS * P * P * 3), GRID, P, TS).bool()
    with torch.no_grad():
        pred = model(clip, mask).pred
        hidden_changed = torch.where(pixel_mask, torch.randn_like(clip) * 5, clip)
        assert not torch.equal(hidden_changed, clip)
        pred_hidden = model(hidden_changed, mask).pred
        visible_changed = torch.where(pixel_mask, clip, clip + 1.0)
        pred_visible = model(visible_changed, mask).pred
    assert torch.equal(pred_hidden, pred)  # masked cubes are never seen by the encoder
    assert (pred_visible - pred).abs().max() > 1e-3  # visible cubes are


def test_one_visible_cube_changes_prediction():
    model = nano().eval()
    clip, mask = rand_clip(b=1), tube_mask(b=1)
    t, h, w = unravel(int((~mask[0]).nonzero()[0]))
    changed = clip.clone()
    changed[:, :, t * TS:(t + 1) * TS, h * P:(h + 1) * P, w * P:(w + 1) * P] += 2.0
    with torch.no_grad():
        assert not torch.allclose(model(clip, mask).pred, model(changed, mask).pred)


# ----------------------------------------------------------------------------- parameter counts

STANDARD = {  # name: (hidden, depth, heads, published VideoMAE parameter count)
    "small": (384, 12, 6, 22e6),
    "base": (768, 12, 12, 87e6),
    "large": (1024, 24, 16, 305e6),
}


def build_ours(name: str, **kw):
    """Build on the meta device (instant; no weights allocated or initialised).

    ``VisionTransformer.__init__`` calls ``torch.linspace(...).tolist()`` for the drop-path rates,
    which cannot run on meta, so that one call is pinned to the CPU while building."""
    linspace = torch.linspace

    def cpu_linspace(*args, **kwargs):
        return linspace(*args, **{**kwargs, "device": "cpu"})

    try:
        with mock.patch.object(torch, "linspace", cpu_linspace), torch.device("meta"):
            return create_model(name, **kw)
    except (NotImplementedError, RuntimeError):  # something else needs real data: build on CPU
        return create_model(name, **kw)


@pytest.fixture(scope="module")
def classifier_counts():
    return {s: param_count(build_ours(f"vit_{s}_patch16", num_classes=400)) for s in STANDARD}


@pytest.mark.parametrize("size", list(STANDARD))
def test_param_count_matches_published(size, classifier_counts):
    assert abs(classifier_counts[size] - STANDARD[size][3]) < 1e6, classifier_counts[size]


@needs_hf
@pytest.mark.parametrize("size", list(STANDARD))
def test_param_count_equals_hf_classifier(size, classifier_counts):
    from transformers import VideoMAEConfig, VideoMAEForVideoClassification

    d, depth, heads, _ = STANDARD[size]
    cfg = VideoMAEConfig(hidden_size=d, num_hidden_layers=depth, num_attention_heads=heads,
                         intermediate_size=4 * d, num_labels=400, use_mean_pooling=True)
    with torch.device("meta"):
        hf = VideoMAEForVideoClassification(cfg)
    assert classifier_counts[size] == param_count(hf)


@needs_hf
def test_param_count_equals_hf_pretraining():
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    cfg = VideoMAEConfig(use_mean_pooling=False, norm_pix_loss=True, decoder_hidden_size=384,
                         decoder_num_attention_heads=6, decoder_num_hidden_layers=4,
                         decoder_intermediate_size=1536)
    with torch.device("meta"):
        hf = VideoMAEForPreTraining(cfg)
    ours = build_ours("mae_vit_base_patch16", num_frames=16, img_size=224, decoder_depth=4)
    assert param_count(ours) == param_count(hf) == 94_210_944


# ----------------------------------------------------------------------------- training

def test_overfits_a_single_clip():
    torch.manual_seed(0)
    model = nano()
    clip, mask = rand_clip(b=1, seed=1), tube_mask(b=1, ratio=0.5, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for _ in range(200):  # about 4-5 s on one CPU thread
        loss = model(clip, mask).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])


def test_grad_checkpointing_same_loss_and_grads(monkeypatch):
    torch.manual_seed(0)
    plain = nano()
    ckpt = nano(grad_checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    clip, mask = rand_clip(), tube_mask()

    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", counting)
    losses = []
    for m in (plain, ckpt):
        loss = m(clip, mask).loss
        loss.backward()
        losses.append(loss.detach())
    depth = len(plain.encoder.blocks) + len(plain.decoder.blocks)
    assert len(calls) == depth  # the flag really checkpoints every block, and only when asked
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-6)
    g_plain = dict(plain.named_parameters())
    for name, p in ckpt.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, g_plain[name].grad, rtol=1e-5, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------- classifier

def test_classifier_shape_and_mean_pooling():
    torch.manual_seed(0)
    model = create_model("vit_nano_patch8", num_frames=T, img_size=S, num_classes=5).eval()
    torch.nn.init.normal_(model.head.weight)  # undo the tiny init_scale so differences show
    clip = rand_clip()
    with torch.no_grad():
        logits = model(clip)
        feats = model.forward_features(clip)  # [B, N, D]
        expected = model.head(model.fc_norm(feats.mean(1)))
        first_token = model.head(model.fc_norm(feats[:, 0]))
    assert logits.shape == (2, 5)
    assert feats.shape == (2, N, model.embed_dim)
    torch.testing.assert_close(logits, expected)
    assert not torch.allclose(logits, first_token)
    assert isinstance(model.norm, torch.nn.Identity)  # mean pooling uses fc_norm, not norm


# ----------------------------------------------------------------------------- bad input

def test_unknown_model_name_lists_close_names():
    with pytest.raises(ValueError, match="mae_vit_base_patch16") as e:
        create_model("mae_vit_bse_patch16")
    assert "unknown model name" in str(e.value)
    assert "vit_base_patch16" in list_models()


@pytest.mark.parametrize("kw,needles", [
    (dict(img_size=36), ["img_size=36", "patch_size=8"]),
    (dict(num_frames=15), ["num_frames=15", "tubelet_size=2"]),
    (dict(num_frames=16, tubelet_size=3), ["num_frames=16", "tubelet_size=3"]),
])
def test_input_size_not_divisible(kw, needles):
    kw = {"num_frames": T, "img_size": S, **kw}
    with pytest.raises(ValueError) as e:
        create_model("mae_vit_nano_patch8", **kw)
    for s in needles:
        assert s in str(e.value)


@pytest.fixture(scope="module")
def model_and_inputs():
    return nano().eval(), rand_clip(), tube_mask()


def test_mask_with_unequal_counts_rejected(model_and_inputs):
    model, clip, mask = model_and_inputs
    bad = mask.clone()
    bad[1, (~bad[1]).nonzero()[0]] = True  # one more hidden cube in row 1
    with pytest.raises(ValueError, match="same number"):
        model(clip, bad)


@pytest.mark.parametrize("bad,needle", [
    (lambda m: m.long(), "bool"),
    (lambda m: m.float(), "bool"),
    (lambda m: m[:, :-1], "shape"),
    (lambda m: m[:1], "shape"),
    (lambda m: m.reshape(2, 8, 16), "shape"),
    (lambda m: torch.zeros_like(m), "hidden"),  # nothing hidden
    (lambda m: torch.ones_like(m), "visible"),  # nothing visible
])
def test_bad_mask_rejected(model_and_inputs, bad, needle):
    model, clip, mask = model_and_inputs
    with pytest.raises(ValueError, match=needle):
        model(clip, bad(mask))


@pytest.mark.parametrize("shape", [(2, 3, 8, S, S), (2, 3, T, 64, 64), (2, 3, T, S, 40)])
def test_wrong_clip_size_rejected(model_and_inputs, shape):
    model, _, mask = model_and_inputs
    with pytest.raises(ValueError, match="expected clips of 16 frames at 32x32"):
        model(torch.zeros(shape), mask)


def test_wrong_clip_rank_rejected(model_and_inputs):
    model, _, mask = model_and_inputs
    with pytest.raises(ValueError):
        model(torch.zeros(2, 3, S, S), mask)
