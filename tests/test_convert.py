"""Checkpoint interoperability: HF transformers VideoMAE, official VideoMAE/MGMAE layouts, ours."""

from __future__ import annotations

import json

import pytest
import torch

from mgmae.config import Config
from mgmae.convert import cli_main, convert, export_model, load_model
from mgmae.engine.checkpoint import load_checkpoint, save_checkpoint
from mgmae.models import create_model
from mgmae.models.mae import PretrainVideoMAE
from mgmae.models.vit import VisionTransformer, param_count, sinusoid_table

HF_REASON = "transformers is not installed (pip install 'mgmae[hf]'); HF interop tests skipped"
TINY = dict(image_size=16, patch_size=8, num_frames=4, hidden_size=64, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=256, decoder_hidden_size=32,
            decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
            decoder_intermediate_size=128, layer_norm_eps=1e-6)
SIZE = dict(num_frames=4, img_size=16, num_heads=2, decoder_num_heads=2)  # what shapes cannot tell


@pytest.fixture(scope="module")
def hf():
    return pytest.importorskip("transformers", reason=HF_REASON)


def _clip(seed=0, frames=4, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, frames, size, size, generator=g)  # (B, C, T, H, W), ours


def _mask():
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, [0, 3, 5, 6]] = True  # same count per clip, different positions would also do
    mask[1] = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0], dtype=torch.bool)
    return mask


def _hf_model(hf, cls, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = hf.VideoMAEConfig(**{**TINY, **kw})
    return getattr(hf, cls)(cfg).eval()


def _nano(kind="pretrain", **kw):
    torch.manual_seed(0)
    if kind == "pretrain":
        return create_model("mae_vit_nano_patch8", num_frames=4, img_size=16, decoder_depth=1,
                            **kw).eval()
    return create_model("vit_nano_patch8", num_frames=4, img_size=16, **kw).eval()


def _randomise(model):  # LayerNorms start at ones/zeros: make every tensor distinctive
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --------------------------------------------------------------------------- (a), (b): HF numerics
@pytest.mark.parametrize("mean_pooling", [True, False])
def test_hf_classifier_logits_match(hf, tmp_path, mean_pooling):
    ref = _randomise(_hf_model(hf, "VideoMAEForVideoClassification", num_labels=5,
                               use_mean_pooling=mean_pooling))
    ref.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    assert isinstance(ours, VisionTransformer) and ours.num_classes == 5
    rep = ours.load_report
    assert rep.source == "hf" and rep.ok and not rep.initialised and not rep.dropped
    x = _clip()
    with torch.no_grad():
        expected = ref(x.transpose(1, 2)).logits  # HF takes (B, T, C, H, W)
        got = ours(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("mean_pooling,norm_pix", [(False, True), (True, False)])
def test_hf_pretraining_loss_match(hf, tmp_path, mean_pooling, norm_pix):
    ref = _randomise(_hf_model(hf, "VideoMAEForPreTraining", use_mean_pooling=mean_pooling,
                               norm_pix_loss=norm_pix))
    ref.save_pretrained(tmp_path)
    ours = load_model(tmp_path)
    assert isinstance(ours, PretrainVideoMAE) and ours.norm_pix_loss == norm_pix
    assert ours.load_report.ok
    x, mask = _clip(), _mask()
    with torch.no_grad():
        expected = ref(x.transpose(1, 2), bool_masked_pos=mask)
        got = ours(x, mask)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pred, expected.logits, atol=1e-5, rtol=0)


def test_hf_encoder_and_pytorch_model_bin(hf, tmp_path):
    ref = _randomise(_hf_model(hf, "VideoMAEModel", use_mean_pooling=False))
    ref.config.save_pretrained(tmp_path)
    torch.save(ref.state_dict(), tmp_path / "pytorch_model.bin")  # query.bias / value.bias names
    ours = load_model(tmp_path)
    assert ours.load_report.source_kind == "encoder" and ours.load_report.ok
    x = _clip()
    with torch.no_grad():
        expected = ref(x.transpose(1, 2)).last_hidden_state
        got = ours.forward_features(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- (c): round trips
@pytest.mark.parametrize("kind", ["pretrain", "classify"])
def test_ours_to_hf_to_ours_bit_exact(tmp_path, kind):
    model = _randomise(_nano(kind, **({"num_classes": 7} if kind == "classify" else {})))
    out = export_model(model, tmp_path / "hf", to="hf")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == "videomae" and cfg["hidden_size"] == 128
    back = load_model(out)
    assert type(back) is type(model) and back.load_report.ok
    _same_state(model, back)
    x = _clip()
    with torch.no_grad():
        if kind == "pretrain":
            assert torch.equal(model(x, _mask()).loss, back(x, _mask()).loss)
        else:
            assert torch.equal(model(x), back(x))


def test_our_hf_export_loads_in_transformers(hf, tmp_path):
    model = _randomise(_nano("classify", num_classes=7))
    export_model(model, tmp_path, to="hf")
    ref = hf.VideoMAEForVideoClassification.from_pretrained(tmp_path).eval()
    x = _clip()
    with torch.no_grad():
        expected = ref(x.transpose(1, 2)).logits
        got = model(x)
    # transformers hard-codes eps=1e-5 in fc_norm (ours 1e-6): tiny, documented difference
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_hf_to_ours_to_hf_round_trip(hf, tmp_path):
    ref = _randomise(_hf_model(hf, "VideoMAEForPreTraining", use_mean_pooling=False))
    ref.save_pretrained(tmp_path / "a")
    convert(tmp_path / "a", tmp_path / "b", to="hf")
    again = hf.VideoMAEForPreTraining.from_pretrained(tmp_path / "b").eval()
    sa, sb = ref.state_dict(), again.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_our_checkpoint_and_safetensors(tmp_path):
    model = _randomise(_nano("pretrain"))
    cfg = Config()
    cfg.model.name, cfg.model.decoder_depth = "mae_vit_nano_patch8", 1
    cfg.data.num_frames, cfg.data.img_size = 4, 16
    save_checkpoint(tmp_path / "ckpt.pth", model=model, config=cfg.to_dict(), kind="pretrain")
    back = load_model(tmp_path / "ckpt.pth")  # the config tells frames, size and heads
    assert back.load_report.source == "mgmae" and back.load_report.ok
    _same_state(model, back)

    convert(tmp_path / "ckpt.pth", tmp_path / "m.safetensors", to="mgmae")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "mgmae" and json.loads(meta["config"])["data"]["num_frames"] == 4
    again = load_model(tmp_path / "m.safetensors")
    assert again.load_report.source == "mgmae-safetensors"
    _same_state(model, again)

    convert(tmp_path / "m.safetensors", tmp_path / "ours.pth", to="mgmae")
    obj = load_checkpoint(tmp_path / "ours.pth")
    assert obj["kind"] == "pretrain" and obj["config"]["model"]["name"] == "mae_vit_nano_patch8"
    _same_state(model, load_model(tmp_path / "ours.pth"))


def test_pretrain_to_classifier_and_encoder(tmp_path):
    model = _randomise(_nano("pretrain"))
    export_model(model, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="num_classes"):
        load_model(tmp_path / "m.safetensors", task="classify")
    clf = load_model(tmp_path / "m.safetensors", task="classify", num_classes=7,
                     drop_path_rate=0.1)
    rep = clf.load_report
    assert rep.ok and clf.num_classes == 7 and clf.fc_norm is not None
    assert set(rep.initialised) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert "mask_token" in rep.dropped and "norm.weight" in rep.dropped
    enc_sd = {k.removeprefix("encoder."): v for k, v in model.state_dict().items()
              if k.startswith("encoder.") and not k.startswith("encoder.norm")}
    for k, v in enc_sd.items():
        assert torch.equal(clf.state_dict()[k], v), k
    enc = load_model(tmp_path / "m.safetensors", task="encoder")
    assert enc.load_report.ok and not enc.load_report.initialised
    with torch.no_grad():
        torch.testing.assert_close(enc.forward_features(_clip()),
                                   model.encoder.forward_features(_clip()), atol=0, rtol=0)


def test_position_tables_regenerated_for_other_sizes(tmp_path):
    model = _randomise(_nano("classify", num_classes=3))
    export_model(model, tmp_path / "m.safetensors")
    bigger = load_model(tmp_path / "m.safetensors", num_frames=8, img_size=32)
    assert bigger.pos_embed.shape == (1, 4 * 4 * 4, 128)
    assert torch.equal(bigger.pos_embed, sinusoid_table(64, 128))
    assert bigger(_clip(frames=8, size=32)).shape == (2, 3)


def test_separable_positions_travel_with_our_checkpoints(tmp_path):
    """The position table is not in the weights: our checkpoints carry it in their config / arch, a
    fine-tuning or feature model gets the same table, and formats that know only VideoMAE's 1D table
    are refused."""
    model = _randomise(_nano("pretrain", pos_embed="sincos_3d"))
    cfg = Config()
    cfg.model.name, cfg.model.decoder_depth, cfg.model.pos_embed = "mae_vit_nano_patch8", 1, "sincos_3d"
    cfg.data.num_frames, cfg.data.img_size = 4, 16
    save_checkpoint(tmp_path / "ckpt.pth", model=model, config=cfg.to_dict(), kind="pretrain")
    export_model(model, tmp_path / "m.safetensors")  # arch metadata only
    for src in ("ckpt.pth", "m.safetensors"):
        enc = load_model(tmp_path / src, task="encoder")
        assert enc.pos_embed_type == "sincos_3d", src
        with torch.no_grad():
            torch.testing.assert_close(enc.forward_features(_clip()),
                                       model.encoder.forward_features(_clip()), atol=0, rtol=0)
        clf = load_model(tmp_path / src, task="classify", num_classes=3)
        assert torch.equal(clf.pos_embed, model.encoder.pos_embed), src
    for to, dst in (("hf", tmp_path / "hf"), ("official", tmp_path / "o.pth")):
        with pytest.raises(ValueError, match="sincos_3d positions"):
            export_model(model, dst, to=to)
    # a 1D model with the same weights computes something else: the table is not a no-op
    plain = _nano("pretrain")
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain.encoder.forward_features(_clip()),
                                  model.encoder.forward_features(_clip()))


# --------------------------------------------------------------------------- (d): official layouts
def _official_from_hf(ref, kind):
    """Official VideoMAE layout written independently of mgmae.convert."""
    sd = {k.removeprefix("videomae."): v for k, v in ref.state_dict().items()}
    out = {}
    enc = "encoder." if kind == "pretrain" else ""
    for k, v in sd.items():
        parts = k.split(".")
        if k.startswith("embeddings.patch_embeddings.projection."):
            out[f"{enc}patch_embed.proj.{parts[-1]}"] = v
        elif k.startswith(("encoder.layer.", "decoder.decoder_layers.")):
            i, rest = parts[2], ".".join(parts[3:])
            base = f"{enc}blocks.{i}." if k.startswith("encoder.") else f"decoder.blocks.{i}."
            if rest == "attention.attention.query.weight":
                out[base + "attn.qkv.weight"] = torch.cat(
                    [v, sd[k.replace("query", "key")], sd[k.replace("query", "value")]])
            elif rest in ("attention.attention.key.weight", "attention.attention.value.weight"):
                continue
            elif rest == "attention.attention.query.bias":
                out[base + "attn.q_bias"] = v
            elif rest == "attention.attention.value.bias":
                out[base + "attn.v_bias"] = v
            else:
                names = {"layernorm_before": "norm1", "layernorm_after": "norm2",
                         "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1",
                         "output.dense": "mlp.fc2"}
                head, leaf = rest.rsplit(".", 1)
                out[base + names[head] + "." + leaf] = v
        elif k.startswith("layernorm."):
            out[f"{enc}norm.{parts[-1]}"] = v
        elif k.startswith("classifier."):
            out[f"head.{parts[-1]}"] = v
        else:  # fc_norm, encoder_to_decoder, mask_token, decoder.norm, decoder.head
            out[k] = v
    return out


@pytest.mark.parametrize("wrap", ["model", "module", "bare", "compiled"])
def test_official_classifier_layouts(hf, tmp_path, wrap):
    ref = _randomise(_hf_model(hf, "VideoMAEForVideoClassification", num_labels=5))
    ref.fc_norm.eps = 1e-6  # official models use 1e-6 everywhere, transformers 1e-5 here
    sd = _official_from_hf(ref, "classify")
    assert "blocks.0.attn.q_bias" in sd and "fc_norm.weight" in sd
    obj = {"model": sd, "epoch": 3} if wrap == "model" else {"module": sd} if wrap == "module" \
        else {f"_orig_mod.{k}": v for k, v in sd.items()} if wrap == "compiled" else sd
    torch.save(obj, tmp_path / "official.pth")
    ours = load_model(tmp_path / "official.pth", num_frames=4, img_size=16, num_heads=2)
    assert ours.load_report.source == "official" and ours.load_report.ok
    x = _clip()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x.transpose(1, 2)).logits, atol=1e-5, rtol=0)


def test_official_pretrain_checkpoint(hf, tmp_path):
    ref = _randomise(_hf_model(hf, "VideoMAEForPreTraining", use_mean_pooling=False))
    ref.decoder.norm.eps = 1e-6  # official models use 1e-6 everywhere, transformers 1e-5 here
    sd = _official_from_hf(ref, "pretrain")
    assert "encoder.norm.weight" in sd and "encoder_to_decoder.weight" in sd
    sd["encoder.pos_embed"] = sinusoid_table(8, 64)  # some files carry the fixed table
    torch.save({"model": sd}, tmp_path / "official.pth")
    with pytest.raises(ValueError, match="num_heads"):  # width 64 is no standard size
        load_model(tmp_path / "official.pth")
    # 8 positions = 4 frames at 16x16 or 16 frames at 8x8: one of the two is needed
    ours = load_model(tmp_path / "official.pth", num_frames=4, num_heads=2, decoder_num_heads=2)
    rep = ours.load_report
    assert rep.ok and rep.arch["img_size"] == 16  # solved from pos_embed
    x, mask = _clip(), _mask()
    with torch.no_grad():
        expected = ref(x.transpose(1, 2), bool_masked_pos=mask).loss
        torch.testing.assert_close(ours(x, mask).loss, expected, atol=1e-5, rtol=0)
    # and back: our official export equals the original state dict
    export_model(ours, tmp_path / "back.pth", to="official")
    back = torch.load(tmp_path / "back.pth", weights_only=True)["model"]  # our export is safe
    del sd["encoder.pos_embed"]
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)


def test_official_layout_without_transformers(tmp_path):
    model = _randomise(_nano("classify", num_classes=4))
    torch.save({"module": model.state_dict()}, tmp_path / "ft.pth")
    back = load_model(tmp_path / "ft.pth", num_frames=4, img_size=16)  # width 128: nano, 4 heads
    assert back.load_report.arch["num_heads"] == 4
    _same_state(model, back)
    default = load_model(tmp_path / "ft.pth")  # official files do not store frames and size
    assert (default.load_report.arch["num_frames"], default.load_report.arch["img_size"]) == (16, 224)
    assert any("not stored" in n for n in default.load_report.notes)
    other = load_model(tmp_path / "ft.pth", num_classes=9, num_frames=4, img_size=16)  # new dataset
    rep = other.load_report
    assert other.num_classes == 9 and rep.ok
    assert rep.initialised == ["head.weight", "head.bias"] and rep.dropped == ["head.weight", "head.bias"]
    assert torch.equal(other.fc_norm.weight, model.fc_norm.weight)


def test_size_from_position_count():
    from mgmae.convert import _solve_size

    assert _solve_size(1568, None, None, 2, 16) == (16, 224)  # ViT-B/16, 16x224x224
    assert _solve_size(1568, 16, None, 2, 16) == (16, 224)
    assert _solve_size(2048, None, 256, 2, 16) == (16, 256)
    assert _solve_size(784, None, None, 2, 16) == (8, 224)
    with pytest.raises(ValueError, match="num_frames"):
        _solve_size(1000, None, None, 2, 16)


# --------------------------------------------------------------------------- errors
def test_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.pth")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a readable"):
        load_model(tmp_path / "notes.txt")
    torch.save({"weights": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="state dict"):
        load_model(tmp_path / "other.pth")
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="not a VideoMAE"):
        load_model(tmp_path / "resnet.pth")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        load_model(tmp_path / "emptydir")
    export_model(_nano("classify", num_classes=2), tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="unknown override"):
        load_model(tmp_path / "x.safetensors", number_of_classes=3)


def test_missing_and_unexpected_keys_strict_vs_not(tmp_path):
    model = _randomise(_nano("classify", num_classes=4))
    sd = model.state_dict()
    del sd["blocks.1.mlp.fc2.weight"]
    sd["blocks.0.attn.gamma"] = torch.zeros(3)
    torch.save({"model": sd}, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match=r"missing 1 tensors.*blocks\.\*\.mlp\.fc2\.weight") as e:
        load_model(tmp_path / "broken.pth", num_frames=4, img_size=16)
    assert "attn.gamma" in str(e.value) and "strict=False" in str(e.value)
    loose = load_model(tmp_path / "broken.pth", strict=False, num_frames=4, img_size=16)
    rep = loose.load_report
    assert rep.missing == ["blocks.1.mlp.fc2.weight"] and rep.unexpected == ["blocks.0.attn.gamma"]
    assert torch.equal(loose.state_dict()["blocks.0.mlp.fc2.weight"], sd["blocks.0.mlp.fc2.weight"])


def test_pretrain_task_needs_a_decoder(tmp_path):
    export_model(_nano("classify", num_classes=2), tmp_path / "ft.safetensors")
    with pytest.raises(ValueError, match="without a decoder"):
        load_model(tmp_path / "ft.safetensors", task="pretrain")
    model = load_model(tmp_path / "ft.safetensors", task="pretrain", strict=False)
    assert isinstance(model, PretrainVideoMAE)
    assert "mask_token" in model.load_report.missing


def test_foreign_checkpoint_through_load_checkpoint(tmp_path):
    torch.save({"model": _nano("classify", num_classes=2).state_dict()}, tmp_path / "official.pth")
    with pytest.raises(ValueError, match="load_model"):
        load_checkpoint(tmp_path / "official.pth")


def test_cli(tmp_path, capsys):
    export_model(_randomise(_nano("pretrain")), tmp_path / "m.safetensors")
    rc = cli_main(["convert", str(tmp_path / "m.safetensors"), str(tmp_path / "ft.pth"),
                   "--to", "official", "--task", "classify", "--num-classes", "5"])
    assert rc == 0 and "initialised" in capsys.readouterr().out
    model = load_model(tmp_path / "ft.pth")  # our official export remembers frames and size
    assert model.num_classes == 5 and model.load_report.arch["num_frames"] == 4
    assert cli_main([str(tmp_path / "missing.pth"), str(tmp_path / "x"), "--to", "hf"]) == 2  # every user error: 2
    assert "not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("size,hidden,layers,heads", [("small", 384, 12, 6), ("base", 768, 12, 12),
                                                      ("large", 1024, 24, 16)])
def test_param_counts_match_transformers(hf, size, hidden, layers, heads):
    cfg = hf.VideoMAEConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=4 * hidden, num_labels=400,
                            image_size=32, num_frames=2)  # positions are no parameters: small table
    with torch.device("meta"):
        theirs = param_count(hf.VideoMAEForVideoClassification(cfg))
    # ours, counted exactly from one- and two-block models (no full-size allocation)
    one, two = (param_count(VisionTransformer(embed_dim=hidden, depth=d, num_heads=heads,
                                              num_classes=400, img_size=32)) for d in (1, 2))
    ours = one + (layers - 1) * (two - one)
    assert ours == theirs
    expected_m = {"small": 22.0, "base": 86.5, "large": 304.0}[size]  # the papers' sizes
    assert abs(ours / 1e6 - expected_m) < 1.0


def test_hf_export_works_with_the_hf_ecosystem(hf, tmp_path):
    """`mgmae convert CKPT DIR --to hf` on a fine-tuned checkpoint writes the processor config,
    id2label from the run's class names and a model card: transformers' own pipeline constructs
    from the directory, and the processor's output fed to the HF model gives our logits on the
    same frames."""
    import numpy as np

    from mgmae.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    model = _randomise(_nano("classify", num_classes=3))
    cfg = Config()
    cfg.model.name = "mae_vit_nano_patch8"
    cfg.data.num_frames, cfg.data.img_size, cfg.masking.name = 4, 16, "motion_guided"
    names = ["pushing something left", "pulling", "spinning"]
    save_checkpoint(tmp_path / "ft.pth", model=model, config=cfg.to_dict(), kind="classify",
                    extra={"class_names": names, "best_acc1": 61.25, "best_epoch": 7,
                           "pretrained": "runs/pt/checkpoint-final.pth"})
    assert cli_main([str(tmp_path / "ft.pth"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    out = tmp_path / "hf"
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors",
                                                "preprocessor_config.json", "README.md"}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": names[0], "1": names[1], "2": names[2]}
    assert config["label2id"]["spinning"] == 2
    card = (out / "README.md").read_text()
    assert "61.25% (epoch 7)" in card and "runs/pt/checkpoint-final.pth" in card and "spinning" in card
    assert "masking" not in card  # a fine-tuning config's masking keys say nothing about the model
    assert load_model(out).load_report.info["class_names"] == names  # and back

    pipe = hf.pipeline("video-classification", model=str(out))
    assert pipe.model.config.id2label[2] == "spinning"
    processor = hf.AutoImageProcessor.from_pretrained(str(out))
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    pixel_values = processor(list(frames), return_tensors="pt")["pixel_values"]  # (1, T, C, H, W)
    ref = hf.VideoMAEForVideoClassification.from_pretrained(str(out)).eval()
    x = torch.from_numpy(frames).float().div(255).permute(3, 0, 1, 2)  # (C, T, H, W)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
    with torch.no_grad():
        expected = ref(pixel_values).logits
        got = model(((x - mean) / std).unsqueeze(0))
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
