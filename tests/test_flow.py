"""Known-answer tests for the flow backends (mgmae.flow): sign and axis order on a known translation,
reduced resolution, validation/sanitising, and RAFT weight loading (torchvision and original layouts)."""

import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from mgmae.flow import FlowEstimator, build_flow, flow_to_color, list_flows
from mgmae.flow.raft import original_to_torchvision, torchvision_to_original

DX, DY = 3, -2  # the known motion: src pixel p moves to p + (3, -2) in dst


def _texture(size=160, seed=0):
    """Smooth random RGB texture in [0, 1], (3, size, size) float32 (Gaussian-blurred noise)."""
    import cv2

    rng = np.random.RandomState(seed)
    chans = [cv2.GaussianBlur(rng.rand(size, size).astype(np.float32), (0, 0), 2.0) for _ in range(3)]
    big = np.stack(chans, 0)
    big = (big - big.min()) / (big.max() - big.min())
    return torch.from_numpy(big)


def _pair(h=96, w=96, dx=DX, dy=DY, seed=0):
    """(src, dst) (1, 3, h, w) crops of one texture, dst = src moved by (dx, dy) exactly."""
    big = _texture(max(h, w) + 40, seed)
    y0 = x0 = 20
    src = big[:, y0:y0 + h, x0:x0 + w]
    dst = big[:, y0 - dy:y0 - dy + h, x0 - dx:x0 - dx + w]  # dst(q) = src(q - d)
    return src[None].contiguous(), dst[None].contiguous()


def _interior_median(flow, margin=16):
    f = flow[..., margin:-margin, margin:-margin]
    return f.flatten(2).median(dim=2).values  # (N, 2)


def _assert_motion(flow, expected, tol=0.5):
    med = _interior_median(flow)
    exp = torch.tensor(expected, dtype=torch.float32)
    assert torch.allclose(med, exp, atol=tol), f"median flow {med.tolist()} != {exp.tolist()}"


def _shift_search(src, dst, r=5):
    """A reference callable: exhaustive global integer-shift search -> constant flow (N, 2, H, W)."""
    n, _, h, w = src.shape
    out = torch.zeros(n, 2, h, w)
    for i in range(n):
        best, arg = None, (0, 0)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                a = src[i, :, r:h - r, r:w - r]
                b = dst[i, :, r + dy:h - r + dy, r + dx:w - r + dx]  # src(p) vs dst(p + d)
                err = float(((a - b) ** 2).mean())
                if best is None or err < best:
                    best, arg = err, (dx, dy)
        out[i, 0], out[i, 1] = arg
    return out


# ----------------------------------------------------------------- classic backends, known motion

@pytest.mark.parametrize("name", ["dis", "farneback"])
def test_opencv_backends_recover_translation_sign_and_axes(name):
    src, dst = _pair()
    est = build_flow(name)
    # batched: the pair and the reversed pair in one call
    flow = est(torch.cat([src, dst]), torch.cat([dst, src]))
    assert flow.shape == (2, 2, 96, 96) and flow.dtype == torch.float32
    _assert_motion(flow[:1], [[DX, DY]])
    _assert_motion(flow[1:], [[-DX, -DY]])


def test_dis_accepts_uint8_and_float_alike():
    src, dst = _pair()
    est = build_flow("dis", preset="medium")
    f_float = est(src, dst)
    f_u8 = est((src * 255).round().to(torch.uint8), (dst * 255).round().to(torch.uint8))
    _assert_motion(f_float, [[DX, DY]], tol=0.25)
    _assert_motion(f_u8, [[DX, DY]], tol=0.25)
    assert (_interior_median(f_float) - _interior_median(f_u8)).abs().max() < 0.1


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_dis_presets(preset):
    src, dst = _pair()
    _assert_motion(build_flow("dis", preset=preset)(src, dst), [[DX, DY]])


def test_dis_options_and_errors():
    est = build_flow("dis", preset="fast", variational_refinement_iterations=2)
    src, dst = _pair()
    _assert_motion(est(src, dst), [[DX, DY]])
    with pytest.raises(ValueError, match="preset"):
        build_flow("dis", preset="slow")
    with pytest.raises(TypeError, match="unknown DIS option"):
        build_flow("dis", bogus_option=1)


def test_dis_estimator_pickles():
    est = build_flow("dis", preset="ultrafast")
    src, dst = _pair()
    est(src, dst)  # the cv2 object exists now; pickling must drop it
    est2 = pickle.loads(pickle.dumps(est))
    _assert_motion(est2(src, dst), [[DX, DY]])


def test_zero_backend():
    src, dst = _pair(40, 56)
    flow = build_flow("zero")(src, dst)
    assert flow.shape == (1, 2, 40, 56) and flow.dtype == torch.float32 and not flow.any()
    with pytest.raises(TypeError):
        build_flow("zero", preset="fast")


def test_callable_backend_is_wrapped_and_gets_float_in_unit_range():
    seen = {}

    def fn(a, b):
        seen["dtype"], seen["max"] = a.dtype, float(a.max())
        return _shift_search(a, b)

    est = build_flow(fn)
    assert isinstance(est, FlowEstimator)
    src, dst = _pair()
    u8 = lambda x: (x * 255).round().to(torch.uint8)  # noqa: E731
    flow = est(u8(torch.cat([src, dst])), u8(torch.cat([dst, src])))
    assert seen["dtype"] == torch.float32 and seen["max"] <= 1.0
    assert torch.equal(flow[0, 0], torch.full((96, 96), float(DX))) and torch.equal(flow[0, 1], torch.full((96, 96), float(DY)))
    assert torch.equal(flow[1, 0], torch.full((96, 96), float(-DX)))
    # numpy output is accepted and converted
    est_np = build_flow(lambda a, b: _shift_search(a, b).numpy())
    assert est_np(src, dst).dtype == torch.float32


def test_callable_wrong_output_shape_raises():
    src, dst = _pair(32, 32)
    with pytest.raises(ValueError, match=r"expected \(N, 2, H, W\)"):
        build_flow(lambda a, b: torch.zeros(1, 2, 16, 16))(src, dst)
    with pytest.raises(ValueError, match=r"expected \(N, 2, H, W\)"):
        build_flow(lambda a, b: torch.zeros(1, 32, 32, 2))(src, dst)


# ----------------------------------------------------------------- reduced resolution

def test_reduced_resolution_gives_full_resolution_pixels():
    sizes = []

    def half_res_truth(a, b):  # at half resolution the true motion is (1.5, -1)
        sizes.append(tuple(a.shape[-2:]))
        f = torch.zeros(a.shape[0], 2, *a.shape[-2:])
        f[:, 0], f[:, 1] = DX / 2, DY / 2
        return f

    src, dst = _pair(96, 128)
    flow = build_flow(half_res_truth, size=48)(src, dst)
    assert sizes == [(48, 64)]  # short side 48, aspect kept
    assert flow.shape == (1, 2, 96, 128)
    assert torch.allclose(flow[:, 0], torch.tensor(float(DX))) and torch.allclose(flow[:, 1], torch.tensor(float(DY)))


@pytest.mark.parametrize("name", ["dis", "farneback"])
def test_reduced_resolution_real_backend(name):
    src, dst = _pair(96, 96)
    flow = build_flow(name, size=48)(src, dst)
    assert flow.shape == (1, 2, 96, 96)
    _assert_motion(flow, [[DX, DY]])


def test_size_validation_and_rewrap():
    with pytest.raises(ValueError, match="size"):
        build_flow("zero", size=0)
    est = build_flow("dis")
    assert build_flow(est) is est
    assert build_flow(est, size=32).size == 32


# ----------------------------------------------------------------- validation / sanitising

def test_input_validation_messages():
    est = build_flow("zero")
    good = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"expected src of shape \(N, 3, H, W\).*got \(3, 16, 16\)"):
        est(good[0], good[0])
    with pytest.raises(ValueError, match=r"got \(2, 4, 16, 16\)"):
        est(torch.rand(2, 4, 16, 16), torch.rand(2, 4, 16, 16))
    with pytest.raises(ValueError, match="same shape"):
        est(good, torch.rand(2, 3, 16, 17))
    with pytest.raises(ValueError, match="dtype"):
        est(good.long(), good.long())
    with pytest.raises(ValueError, match="torch.Tensor"):
        est(good.numpy(), good.numpy())
    # 1-channel input is accepted
    assert est(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8)).shape == (1, 2, 8, 8)


def test_float_out_of_range_warns_and_clips():
    est = build_flow("zero")
    with pytest.warns(RuntimeWarning, match=r"\[0, 1\]"):
        est(torch.randn(1, 3, 8, 8) * 3, torch.rand(1, 3, 8, 8))


def test_nonfinite_output_sanitised_and_warned_once():
    def bad(a, b):
        f = torch.ones(a.shape[0], 2, *a.shape[-2:])
        f[:, 0, 0, 0], f[:, 1, 1, 1], f[:, 0, 2, 2] = float("nan"), float("inf"), -float("inf")
        return f

    est = build_flow(bad)
    src, dst = _pair(16, 16)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        f1 = est(src, dst)
        f2 = est(src, dst)
    assert len([w for w in rec if "NaN/inf" in str(w.message)]) == 1
    assert torch.isfinite(f1).all() and f1[0, 0, 0, 0] == 0 and f1[0, 1, 1, 1] == 0 and f1[0, 0, 2, 2] == 0
    assert f1[0, 0, 5, 5] == 1 and torch.equal(f1, f2)


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="Did you mean 'dis'"):
        build_flow("dys")
    assert {"dis", "farneback", "raft_small", "raft_large", "zero"} <= set(list_flows())


def test_flow_to_color():
    f = torch.zeros(2, 2, 8, 8)
    f[:, 0] = 1.0
    f[1, 1, 0, 0] = float("nan")
    img = flow_to_color(f)
    assert img.shape == (2, 3, 8, 8) and img.dtype == torch.uint8
    assert flow_to_color(f[0]).shape == (3, 8, 8)
    with pytest.raises(ValueError):
        flow_to_color(torch.zeros(1, 3, 8, 8))


# ----------------------------------------------------------------- RAFT: weights and forward

@pytest.fixture(scope="module")
def small_sd():
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    return raft_small(weights=None).state_dict()


@pytest.fixture(scope="module")
def large_sd():
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(0)
    m = raft_large(weights=None)
    # make the BatchNorm buffers non-trivial so that a mix-up would show
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2)
    return m.state_dict()


def _model_sd(est):
    return est.fn.model.state_dict()


def test_raft_missing_weights_file_is_a_clear_error(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere" / "raft_small.pth"
    with pytest.raises(FileNotFoundError) as e:
        build_flow("raft_small", weights=str(missing))
    msg = str(e.value)
    assert str(missing) in msg and "raft-small.pth" in msg and "raft_small_C_T_V2" in msg
    # no path at all: looks in $MGMAE_WEIGHTS_DIR and torch hub's cache, then says where to put it
    monkeypatch.delenv("MGMAE_RAFT_SMALL_WEIGHTS", raising=False)
    monkeypatch.setenv("MGMAE_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(FileNotFoundError, match=r"MGMAE_RAFT_SMALL_WEIGHTS.*" + str(tmp_path / "w")):
        build_flow("raft_small")


def test_raft_default_location_is_found(tmp_path, monkeypatch, small_sd):
    monkeypatch.delenv("MGMAE_RAFT_SMALL_WEIGHTS", raising=False)
    monkeypatch.setenv("MGMAE_WEIGHTS_DIR", str(tmp_path))
    torch.save(torchvision_to_original(small_sd), tmp_path / "raft-small.pth")
    est = build_flow("raft_small")
    assert est.fn.weights_path == tmp_path / "raft-small.pth"


def test_raft_torchvision_layout_loads(tmp_path, small_sd):
    p = tmp_path / "raft_small_C_T_V2-01064c6d.pth"
    torch.save(small_sd, p)
    est = build_flow("raft_small", weights=p)
    got = _model_sd(est)
    assert set(got) == set(small_sd) and all(torch.equal(got[k], small_sd[k]) for k in small_sd)
    assert est.fn.iters == 6


@pytest.mark.parametrize("which", ["small", "large"])
def test_raft_original_layout_loads_to_identical_weights(tmp_path, which, small_sd, large_sd):
    sd = small_sd if which == "small" else large_sd
    orig = torchvision_to_original(sd)
    # it really is in the original repository's layout
    assert all(k.startswith("module.") for k in orig)
    assert "module.fnet.conv1.weight" in orig and "module.update_block.encoder.convc1.weight" in orig
    assert "module.update_block.flow_head.conv2.bias" in orig
    if which == "small":
        assert "module.update_block.gru.convz.weight" in orig and "module.fnet.layer2.0.norm4.weight" not in orig
        assert "module.cnet.layer1.0.conv3.weight" in orig  # BottleneckBlock
    else:
        assert "module.update_block.gru.convq2.weight" in orig and "module.update_block.mask.2.weight" in orig
        assert torch.equal(orig["module.cnet.layer2.0.norm3.running_mean"],
                           orig["module.cnet.layer2.0.downsample.1.running_mean"])  # the alias, as nn.Module saves it
    assert not any(k.startswith("module.feature_encoder") for k in orig)
    back = original_to_torchvision(orig)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)

    p = tmp_path / ("raft-small.pth" if which == "small" else "raft-things.pth")
    torch.save(orig, p)
    est = build_flow(f"raft_{which}", weights=p)
    got = _model_sd(est)
    assert set(got) == set(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    assert est.fn.iters == (6 if which == "small" else 12)


def test_raft_wrong_model_or_not_raft_raises(tmp_path, small_sd, large_sd):
    p = tmp_path / "large.pth"
    torch.save(large_sd, p)
    with pytest.raises(ValueError, match=r"holds raft_large weights.*raft_small was requested"):
        build_flow("raft_small", weights=p)
    torch.save(torchvision_to_original(large_sd), p)
    with pytest.raises(ValueError, match=r"holds raft_large weights"):
        build_flow("raft_small", weights=p)
    torch.save(small_sd, p)
    with pytest.raises(ValueError, match=r"holds raft_small weights.*raft_large was requested"):
        build_flow("raft_large", weights=p)
    torch.save({"encoder.blocks.0.weight": torch.zeros(3)}, p)
    with pytest.raises(ValueError, match="not a RAFT state dict"):
        build_flow("raft_small", weights=p)
    p.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="could not read"):
        build_flow("raft_small", weights=p)
    # a torchvision-layout file with a layer missing: strict loading names it
    partial = {k: v for k, v in small_sd.items() if not k.startswith("update_block.flow_head.")}
    torch.save(partial, p)
    with pytest.raises(ValueError, match="missing keys: update_block.flow_head"):
        build_flow("raft_small", weights=p)


def test_raft_forward_random_weights_pads_and_crops(tmp_path, small_sd):
    p = tmp_path / "raft_small.pth"
    torch.save(small_sd, p)
    est = build_flow("raft_small", weights=p, iters=2)
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 3, 60, 84, generator=g)
    dst = torch.rand(2, 3, 60, 84, generator=g)
    flow = est(src, dst)
    assert flow.shape == (2, 2, 60, 84) and flow.dtype == torch.float32 and torch.isfinite(flow).all()
    # batched == one by one; uint8 input accepted
    one = est(src[1:], dst[1:])
    assert torch.allclose(flow[1:], one, atol=1e-4)
    u8 = est((src * 255).to(torch.uint8), (dst * 255).to(torch.uint8))
    assert u8.shape == (2, 2, 60, 84)
    # random_init path (no file) and batch_size chunking
    est2 = build_flow("raft_small", random_init=True, iters=1, batch_size=1)
    assert est2(src, dst).shape == (2, 2, 60, 84)


@pytest.mark.skipif(not os.environ.get("MGMAE_RAFT_SMALL_WEIGHTS"),
                    reason="set MGMAE_RAFT_SMALL_WEIGHTS to a raft_small weight file (torchvision "
                           "raft_small_C_T_V2-01064c6d.pth or princeton-vl raft-small.pth) to run")
def test_raft_small_accuracy_on_translation():
    src, dst = _pair(128, 128)
    est = build_flow("raft_small", weights=os.environ["MGMAE_RAFT_SMALL_WEIGHTS"])
    flow = est(torch.cat([src, dst]), torch.cat([dst, src]))
    _assert_motion(flow[:1], [[DX, DY]])
    _assert_motion(flow[1:], [[-DX, -DY]])


# ----------------------------------------------------------------- RAFT: the original repository's key layout
# Written from the original RAFT source as vendored by the official MGMAE repository
# (flow_utils/raft/core/extractor.py, update.py, raft.py), not from torchvision.
# small: SmallEncoder (BottleneckBlock, 32-32-64-96), fnet InstanceNorm (no keys), cnet no norm,
#        SmallMotionEncoder (corr 4 levels x 7x7 = 196), ConvGRU(96, 82 + 64), FlowHead(96, 128).
# large: BasicEncoder (ResidualBlock, 64-64-96-128), fnet InstanceNorm (no keys), cnet BatchNorm,
#        BasicMotionEncoder (corr 4 x 9x9 = 324), SepConvGRU(128, 256), FlowHead(128, 256), mask head.
ORIGINAL_SMALL = {
    "fnet.conv1.weight": (32, 3, 7, 7), "fnet.conv1.bias": (32,),
    "fnet.layer1.0.conv1.weight": (8, 32, 1, 1), "fnet.layer1.0.conv2.weight": (8, 8, 3, 3),
    "fnet.layer1.0.conv3.weight": (32, 8, 1, 1), "fnet.layer2.0.conv1.weight": (16, 32, 1, 1),
    "fnet.layer2.0.conv2.weight": (16, 16, 3, 3), "fnet.layer2.0.conv3.bias": (64,),
    "fnet.layer2.0.downsample.0.weight": (64, 32, 1, 1), "fnet.layer2.1.conv1.weight": (16, 64, 1, 1),
    "fnet.layer3.0.conv1.weight": (24, 64, 1, 1), "fnet.layer3.0.downsample.0.weight": (96, 64, 1, 1),
    "fnet.layer3.1.conv3.weight": (96, 24, 1, 1), "fnet.conv2.weight": (128, 96, 1, 1),
    "cnet.conv1.weight": (32, 3, 7, 7), "cnet.layer3.0.downsample.0.bias": (96,),
    "cnet.conv2.weight": (160, 96, 1, 1), "cnet.conv2.bias": (160,),
    "update_block.encoder.convc1.weight": (96, 196, 1, 1), "update_block.encoder.convf1.weight": (64, 2, 7, 7),
    "update_block.encoder.convf2.weight": (32, 64, 3, 3), "update_block.encoder.conv.weight": (80, 128, 3, 3),
    "update_block.encoder.conv.bias": (80,), "update_block.gru.convz.weight": (96, 242, 3, 3),
    "update_block.gru.convr.weight": (96, 242, 3, 3), "update_block.gru.convq.weight": (96, 242, 3, 3),
    "update_block.gru.convq.bias": (96,), "update_block.flow_head.conv1.weight": (128, 96, 3, 3),
    "update_block.flow_head.conv2.weight": (2, 128, 3, 3), "update_block.flow_head.conv2.bias": (2,),
}
ABSENT_SMALL = ["fnet.norm1.weight", "cnet.norm1.weight", "fnet.layer2.0.norm4.weight",
                "cnet.layer2.0.downsample.1.weight", "fnet.layer1.0.downsample.0.weight",
                "update_block.encoder.convc2.weight", "update_block.gru.convz1.weight",
                "update_block.mask.0.weight"]
ORIGINAL_LARGE = {
    "fnet.conv1.weight": (64, 3, 7, 7), "fnet.layer1.0.conv1.weight": (64, 64, 3, 3),
    "fnet.layer1.1.conv2.weight": (64, 64, 3, 3), "fnet.layer2.0.conv1.weight": (96, 64, 3, 3),
    "fnet.layer2.0.downsample.0.weight": (96, 64, 1, 1), "fnet.layer3.0.conv1.weight": (128, 96, 3, 3),
    "fnet.layer3.1.conv2.bias": (128,), "fnet.conv2.weight": (256, 128, 1, 1),
    "cnet.norm1.weight": (64,), "cnet.norm1.running_var": (64,), "cnet.norm1.num_batches_tracked": (),
    "cnet.layer1.0.norm1.weight": (64,), "cnet.layer1.0.norm2.running_mean": (64,),
    "cnet.layer2.0.norm3.weight": (96,), "cnet.layer2.0.downsample.1.weight": (96,),
    "cnet.layer2.0.downsample.1.running_mean": (96,), "cnet.layer3.0.norm3.bias": (128,),
    "cnet.layer3.1.norm2.weight": (128,), "cnet.conv2.weight": (256, 128, 1, 1),
    "update_block.encoder.convc1.weight": (256, 324, 1, 1), "update_block.encoder.convc2.weight": (192, 256, 3, 3),
    "update_block.encoder.convf1.weight": (128, 2, 7, 7), "update_block.encoder.convf2.weight": (64, 128, 3, 3),
    "update_block.encoder.conv.weight": (126, 256, 3, 3), "update_block.gru.convz1.weight": (128, 384, 1, 5),
    "update_block.gru.convr1.weight": (128, 384, 1, 5), "update_block.gru.convq1.bias": (128,),
    "update_block.gru.convz2.weight": (128, 384, 5, 1), "update_block.gru.convq2.weight": (128, 384, 5, 1),
    "update_block.flow_head.conv1.weight": (256, 128, 3, 3), "update_block.flow_head.conv2.weight": (2, 256, 3, 3),
    "update_block.mask.0.weight": (256, 128, 3, 3), "update_block.mask.0.bias": (256,),
    "update_block.mask.2.weight": (576, 256, 1, 1), "update_block.mask.2.bias": (576,),
}
ABSENT_LARGE = ["fnet.norm1.weight", "fnet.layer2.0.norm3.weight", "fnet.layer2.0.downsample.1.weight",
                "cnet.layer1.0.norm3.weight", "cnet.layer1.0.downsample.0.weight",
                "update_block.gru.convz.weight", "update_block.encoder.convc3.weight"]
# a few original -> torchvision correspondences, spelled out
ORIGINAL_TO_TV = {
    "small": {"fnet.conv1.weight": "feature_encoder.convnormrelu.0.weight",
              "fnet.conv2.weight": "feature_encoder.conv.weight",
              "fnet.layer1.0.conv3.weight": "feature_encoder.layer1.0.convnormrelu3.0.weight",
              "cnet.layer2.0.downsample.0.weight": "context_encoder.layer2.0.downsample.0.weight",
              "update_block.encoder.convc1.weight": "update_block.motion_encoder.convcorr1.0.weight",
              "update_block.encoder.conv.bias": "update_block.motion_encoder.conv.0.bias",
              "update_block.gru.convq.weight": "update_block.recurrent_block.convgru1.convq.weight",
              "update_block.flow_head.conv2.bias": "update_block.flow_head.conv2.bias"},
    "large": {"cnet.norm1.running_mean": "context_encoder.convnormrelu.1.running_mean",
              "cnet.layer1.1.norm2.weight": "context_encoder.layer1.1.convnormrelu2.1.weight",
              "cnet.layer3.0.norm3.weight": "context_encoder.layer3.0.downsample.1.weight",
              "update_block.encoder.convc2.weight": "update_block.motion_encoder.convcorr2.0.weight",
              "update_block.encoder.convf2.bias": "update_block.motion_encoder.convflow2.0.bias",
              "update_block.gru.convz2.weight": "update_block.recurrent_block.convgru2.convz.weight",
              "update_block.mask.0.weight": "mask_predictor.convrelu.0.weight",
              "update_block.mask.2.bias": "mask_predictor.conv.bias"},
}


def _original_raft_shapes(small: bool) -> dict[str, tuple]:
    """Every key of the original RAFT state dict with its shape (what ``RAFT(args).state_dict()``
    holds, aliases included), enumerated from the architecture described above."""
    keys: dict[str, tuple] = {}

    def conv(name, cout, cin, kh, kw=None):
        keys[f"{name}.weight"] = (cout, cin, kh, kh if kw is None else kw)
        keys[f"{name}.bias"] = (cout,)

    def norm(name, kind, c):
        if kind == "batch":
            keys.update({f"{name}.{p}": (c,) for p in ("weight", "bias", "running_mean", "running_var")})
            keys[f"{name}.num_batches_tracked"] = ()

    def encoder(pre, out_dim, kind):
        dims = (32, 32, 64, 96) if small else (64, 64, 96, 128)
        conv(f"{pre}.conv1", dims[0], 3, 7)
        norm(f"{pre}.norm1", kind, dims[0])
        cin = dims[0]
        for layer, (d, first_stride) in enumerate(zip(dims[1:], (1, 2, 2)), start=1):
            for i in range(2):
                b, stride = f"{pre}.layer{layer}.{i}", first_stride if i == 0 else 1
                if small:  # BottleneckBlock
                    conv(f"{b}.conv1", d // 4, cin, 1)
                    conv(f"{b}.conv2", d // 4, d // 4, 3)
                    conv(f"{b}.conv3", d, d // 4, 1)
                    for j, c in ((1, d // 4), (2, d // 4), (3, d)):
                        norm(f"{b}.norm{j}", kind, c)
                else:  # ResidualBlock
                    conv(f"{b}.conv1", d, cin, 3)
                    conv(f"{b}.conv2", d, d, 3)
                    norm(f"{b}.norm1", kind, d)
                    norm(f"{b}.norm2", kind, d)
                if stride != 1:  # the downsample's norm is registered twice
                    norm(f"{b}.norm{4 if small else 3}", kind, d)
                    conv(f"{b}.downsample.0", d, cin, 1)
                    norm(f"{b}.downsample.1", kind, d)
                cin = d
        conv(f"{pre}.conv2", out_dim, dims[3], 1)

    u = "update_block"
    if small:
        encoder("fnet", 128, "instance")
        encoder("cnet", 96 + 64, "none")
        conv(f"{u}.encoder.convc1", 96, 4 * 7 * 7, 1)
        conv(f"{u}.encoder.convf1", 64, 2, 7)
        conv(f"{u}.encoder.convf2", 32, 64, 3)
        conv(f"{u}.encoder.conv", 80, 128, 3)
        for g in "zrq":
            conv(f"{u}.gru.conv{g}", 96, 96 + 82 + 64, 3)
        conv(f"{u}.flow_head.conv1", 128, 96, 3)
        conv(f"{u}.flow_head.conv2", 2, 128, 3)
    else:
        encoder("fnet", 256, "instance")
        encoder("cnet", 128 + 128, "batch")
        conv(f"{u}.encoder.convc1", 256, 4 * 9 * 9, 1)
        conv(f"{u}.encoder.convc2", 192, 256, 3)
        conv(f"{u}.encoder.convf1", 128, 2, 7)
        conv(f"{u}.encoder.convf2", 64, 128, 3)
        conv(f"{u}.encoder.conv", 126, 64 + 192, 3)
        for i, (kh, kw) in ((1, (1, 5)), (2, (5, 1))):
            for g in "zrq":
                conv(f"{u}.gru.conv{g}{i}", 128, 128 + 256, kh, kw)
        conv(f"{u}.flow_head.conv1", 256, 128, 3)
        conv(f"{u}.flow_head.conv2", 2, 256, 3)
        conv(f"{u}.mask.0", 256, 128, 3)
        conv(f"{u}.mask.2", 64 * 9, 256, 1)
    return keys


@pytest.mark.parametrize("which", ["small", "large"])
def test_raft_key_map_matches_the_original_repository(which, small_sd, large_sd):
    small = which == "small"
    sd = small_sd if small else large_sd
    expected, absent = (ORIGINAL_SMALL, ABSENT_SMALL) if small else (ORIGINAL_LARGE, ABSENT_LARGE)
    full = _original_raft_shapes(small)
    assert len(full) == (106 if small else 179)
    # the enumeration agrees with the hand-written representative keys
    for k, shape in expected.items():
        assert full.get(k) == shape, k
    assert not set(absent) & set(full)

    # torchvision -> original gives exactly the original layout, with the original shapes
    conv = {k.removeprefix("module."): tuple(v.shape) for k, v in torchvision_to_original(sd).items()}
    assert conv == full
    for k in absent:
        assert k not in conv

    # an original-layout state dict (no "module." prefix, like MGMAE's raft-small-clean.pth) converts
    # to exactly torchvision's keys and shapes; values go where the names say
    g = torch.Generator().manual_seed(0)
    orig = {k: torch.randn(s, generator=g) if s else torch.tensor(7) for k, s in full.items()}
    for k in list(orig):  # the aliased norm holds the same tensor under both names
        if ".downsample.1." in k:
            orig[k.replace("downsample.1", f"norm{4 if small else 3}")] = orig[k]
    tv = original_to_torchvision(orig)
    assert {k: tuple(v.shape) for k, v in tv.items()} == {k: tuple(v.shape) for k, v in sd.items()}
    for k_orig, k_tv in ORIGINAL_TO_TV[which].items():
        assert torch.equal(tv[k_tv], orig[k_orig]), (k_orig, k_tv)
    # aliases that disagree are refused
    if not small:
        bad = dict(orig)
        bad["cnet.layer2.0.norm3.weight"] = orig["cnet.layer2.0.norm3.weight"] + 1
        with pytest.raises(ValueError, match="alias"):
            original_to_torchvision(bad)


def test_raft_original_file_without_prefix_or_bn_counter_loads(tmp_path, large_sd):
    orig = torchvision_to_original(large_sd, prefix="")
    assert "cnet.norm1.num_batches_tracked" in orig
    old = {k: v for k, v in orig.items() if not k.endswith("num_batches_tracked")}  # pre-0.4.1 file
    p = tmp_path / "raft-things.pth"
    torch.save(old, p)
    got = _model_sd(build_flow("raft_large", weights=p, iters=1))
    assert all(torch.equal(got[k], large_sd[k]) for k in large_sd if not k.endswith("num_batches_tracked"))


@pytest.mark.parametrize("name,size", [("dis", None), ("farneback", None), ("dis", 32), ("zero", None)])
def test_pairs_equals_pairwise_calls(name, size):
    """FlowEstimator.pairs (frames converted/resized once) gives exactly what per-pair calls give."""
    g = torch.Generator().manual_seed(0)
    frames = torch.nn.functional.avg_pool2d(torch.rand(2 * 5, 3, 48, 64, generator=g), 5, 1, 2)
    frames = frames.reshape(2, 5, 3, 48, 64)
    pairs = [(1, 0), (2, 1), (0, 1), (3, 4)]
    f = build_flow(name, size=size)
    got = f.pairs(frames, pairs)
    assert got.shape == (2, 4, 2, 48, 64)
    for b in range(2):
        for i, (s, d) in enumerate(pairs):
            want = f(frames[b, s][None], frames[b, d][None])[0]
            torch.testing.assert_close(got[b, i], want, atol=1e-5, rtol=0)


def test_dis_results_do_not_depend_on_call_history():
    """OpenCV's DIS changes its own finest scale on small images; our wrapper must not carry that
    state from one call to the next."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 1, 3, 32, 43, generator=g)
    f = build_flow("dis")
    first = f(a, b)
    assert torch.equal(first, f(a, b))


def test_uint8_frames_reach_dis_without_a_float_round_trip(monkeypatch):
    """The lean DIS path: uint8 clips go to OpenCV's fixed-point grey conversion as they are
    (within one grey level of the float path) and the flow is the same as from float frames."""
    from mgmae.flow.opencv import DISFlow, to_gray_uint8

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 48, 64), dtype=torch.uint8, generator=g)
    diff = to_gray_uint8(x).astype(int) - to_gray_uint8(x.float() / 255).astype(int)
    assert abs(diff).max() <= 1
    est = build_flow("dis")
    seen = []
    real = DISFlow.pairs

    def spy(self, frames, pairs):
        seen.append(frames.dtype)
        return real(self, frames, pairs)

    monkeypatch.setattr(DISFlow, "pairs", spy)
    base = torch.zeros(1, 2, 3, 64, 96, dtype=torch.uint8)
    base[0, 0, :, 20:40, 30:50] = 200
    base[0, 1, :, 22:42, 33:53] = 200  # the square moved (+3, +2)
    f8 = est.pairs(base, [(0, 1)])
    f32 = est.pairs(base.float() / 255, [(0, 1)])
    assert seen == [torch.uint8, torch.float32]
    torch.testing.assert_close(f8, f32, atol=1e-4, rtol=0)
    assert float(f8[0, 0, 0, 30, 40]) == pytest.approx(3.0, abs=0.5)


# ----------------------------------------------------------------- RAFT in the step (issue 20)

def _random_raft(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_flow("raft_small", weights="random", **kw)


def test_raft_chunked_pairs_give_the_unchunked_flow():
    g = torch.Generator().manual_seed(3)
    src, dst = torch.rand(5, 3, 64, 72, generator=g), torch.rand(5, 3, 64, 72, generator=g)
    whole = _random_raft(iters=2)
    chunked = _random_raft(iters=2, batch_size=2)
    chunked.fn.model.load_state_dict(whole.fn.model.state_dict())
    assert whole.fn.batch_size is None and chunked.fn.batch_size == 2
    a, b = whole(src, dst), chunked(src, dst)
    assert a.shape == b.shape == (5, 2, 64, 72) and a.abs().max() > 0
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    # and the chunks are really separate calls: 3 calls for 5 pairs in chunks of 2
    calls = []
    orig = chunked.fn._run
    chunked.fn._run = lambda s, d: calls.append(s.shape[0]) or orig(s, d)
    chunked(src, dst)
    assert calls == [2, 2, 1]


def test_raft_iters_null_is_the_models_standard():
    assert _random_raft().fn.iters == 6
    assert _random_raft(iters=None).fn.iters == 6
    assert _random_raft(iters=3).fn.iters == 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert build_flow("raft_large", weights="random").fn.iters == 12
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="flow.iters"):
            _random_raft(iters=bad)


def test_raft_random_weights_warn_loudly():
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        est = build_flow("raft_small", weights="random")
    assert est.fn.weights_path is None and "RANDOM WEIGHTS" in repr(est.fn)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        build_flow("raft_small", random_init=True)


def test_raft_bad_batch_size_and_amp_name_the_key():
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match=r"flow\.batch_size.*>= 1"):
            _random_raft(batch_size=bad)
    with pytest.raises(ValueError, match=r"flow\.amp = 'fp8'; allowed: auto, bf16, fp16, none"):
        _random_raft(amp="fp8")


def test_raft_wrong_weights_name_the_key_and_the_file(tmp_path, large_sd):
    p = tmp_path / "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
    torch.save(large_sd, p)
    with pytest.raises(ValueError) as e:
        build_flow("raft_small", weights=p)
    msg = str(e.value)
    assert "flow.weights" in msg and str(p) in msg and "raft_large" in msg and "raft_small_C_T_V2" in msg


def test_raft_amp_on_the_cpu():
    g = torch.Generator().manual_seed(4)
    src, dst = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    fp32 = _random_raft(iters=2)
    bf16 = _random_raft(iters=2, amp="bf16")
    auto = _random_raft(iters=2, amp="auto")
    bf16.fn.model.load_state_dict(fp32.fn.model.state_dict())
    cpu = torch.device("cpu")
    assert auto.fn.amp_dtype(cpu) is None and bf16.fn.amp_dtype(cpu) is torch.bfloat16
    assert fp32.fn.amp_dtype(cpu) is None
    a, b = fp32(src, dst), bf16(src, dst)
    assert a.dtype == b.dtype == torch.float32
    assert not torch.equal(a, b)  # autocast really ran
    assert (a - b).abs().mean() < 0.1 * a.abs().mean() + 1e-3
    # an outer autocast (the training step's) does not leak into fp32 RAFT
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(fp32(src, dst), a, atol=1e-5)


def test_masker_from_config_wires_the_raft_keys():
    from mgmae.config import load_config
    from mgmae.engine.pretrain import masker_from_config

    cfg = load_config(None, ["masking.name=motion_guided", "flow.name=raft_small", "flow.weights=random",
                             "flow.batch_size=7", "flow.amp=none", "data.img_size=64", "data.num_frames=4"])
    m = masker_from_config(cfg, 16, seed=0)
    assert "RANDOM WEIGHTS" in repr(m)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        fn = m.flow.fn
    assert (fn.iters, fn.batch_size, fn.amp) == (6, 7, "none")
    clip = torch.randn(2, 3, 4, 64, 64)
    mask = m(clip)
    assert mask.shape == (2, m.num_tokens) and mask.dtype == torch.bool


def test_all_finite_matches_torch_isfinite():
    """The NumPy shortcut for CPU tensors says what torch.isfinite(...).all() says, for every kind
    of non-finite value, on views, with autograd, and on dtypes NumPy lacks (bfloat16: torch)."""
    from mgmae.flow import all_finite

    base = torch.randn(3, 2, 8, 9)
    cases = [base, base.double(), base[:, :, ::2, 1:], base.transpose(2, 3),
             base.clone().requires_grad_(True), base.half(), base.bfloat16(), torch.zeros(0, 2, 4, 4)]
    for bad in (float("nan"), float("inf"), float("-inf")):
        t = base.clone()
        t[2, 1, 7, 8] = bad
        cases += [t, t.double(), t.bfloat16(), t.flip(-1), t[:, :, 4:]]
    verdicts = [all_finite(t) for t in cases]
    assert verdicts == [bool(torch.isfinite(t).all()) for t in cases]
    assert verdicts[:8] == [True] * 8 and not any(verdicts[8:])
