"""Continued pre-training (``train.init_from``): the weights a run starts from, what it says about
them, size mismatches, and a resume point taking precedence."""

import pytest
import torch
from test_engine import TINY, assert_same, cfg_for, weights

from mgmae.cli import main
from mgmae.config import load_config
from mgmae.convert import export_model
from mgmae.engine import checkpoint as ckpt
from mgmae.engine.loop import Preempted
from mgmae.engine.pretrain import build_model, pretrain
from mgmae.models.build import build_classifier, init_pretrain_model


def tiny_cfg(*extra):
    return load_config(None, TINY + list(extra))


def fresh(cfg, seed: int):
    torch.manual_seed(seed)
    return build_model(cfg)


def saved(tmp_path, cfg, name="src.pth", seed=1):
    """A pre-training checkpoint of ours with random weights drawn from ``seed``."""
    model = fresh(cfg, seed)
    return export_model(model, tmp_path / name, config=cfg.to_dict()), model


@pytest.mark.parametrize("name, to, source", [("src.pth", "mgmae", "mgmae"),
                                               ("src.safetensors", "mgmae", "mgmae-safetensors"),
                                               ("official.pth", "official", "official")])
def test_pretraining_checkpoint_gives_its_encoder_and_decoder(tmp_path, name, to, source):
    cfg = tiny_cfg()
    src = fresh(cfg, seed=1)
    path = export_model(src, tmp_path / name, to=to, config=cfg.to_dict())
    model = fresh(cfg, seed=2)
    line = init_pretrain_model(model, path, cfg)
    assert f"({source}, pretrain checkpoint)" in line
    assert_same(model.state_dict(), src.state_dict())
    n_enc = sum(k.startswith("encoder.") for k, _ in model.named_parameters())
    n_dec = sum(not k.startswith("encoder.") for k, _ in model.named_parameters())
    assert f"encoder {n_enc} tensors, decoder {n_dec} tensors" in line
    assert "not in the file" not in line


def test_engine_starts_from_the_file_at_step_zero(tmp_path, capsys):
    """The run's weights before its first step are the file's: a run of 0 steps would be the
    file; here one step with lr 0 leaves them (Adam with lr 0 does not move)."""
    cfg = tiny_cfg()
    path, src = saved(tmp_path, cfg)
    run = pretrain(cfg_for(tmp_path, "cont", "train.max_steps=1", "train.num_workers=0", "train.lr=0",
                           "train.min_lr=0", "train.warmup_lr=0", "train.weight_decay=0",
                           "masking.name=tube", f"train.init_from={path}"))
    out = capsys.readouterr().out
    assert f"init_from {path} (mgmae, pretrain checkpoint): encoder" in out
    assert_same(weights(run), src.state_dict())


def test_hf_pretraining_directory_gives_the_encoder(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = tiny_cfg("model.name=mae_vit_nano_patch8", "model.norm_pix_loss=true")
    hf_cfg = transformers.VideoMAEConfig(
        image_size=32, patch_size=8, num_channels=3, num_frames=4, tubelet_size=2, hidden_size=128,
        num_hidden_layers=4, num_attention_heads=4, intermediate_size=512, qkv_bias=True,
        use_mean_pooling=False, decoder_hidden_size=64, decoder_num_hidden_layers=2,
        decoder_num_attention_heads=4, decoder_intermediate_size=256, norm_pix_loss=True)
    torch.manual_seed(3)
    hf = transformers.VideoMAEForPreTraining(hf_cfg)
    hf.save_pretrained(tmp_path / "hf")
    hsd = hf.state_dict()
    model = fresh(cfg, seed=4)
    line = init_pretrain_model(model, tmp_path / "hf", cfg)
    sd = model.state_dict()
    assert torch.equal(sd["encoder.patch_embed.proj.weight"],
                       hsd["videomae.embeddings.patch_embeddings.projection.weight"])
    for i in range(4):
        a = f"videomae.encoder.layer.{i}.attention.attention."
        assert torch.equal(sd[f"encoder.blocks.{i}.attn.qkv.weight"],
                           torch.cat([hsd[a + "query.weight"], hsd[a + "key.weight"], hsd[a + "value.weight"]]))
        assert torch.equal(sd[f"encoder.blocks.{i}.mlp.fc2.weight"],
                           hsd[f"videomae.encoder.layer.{i}.output.dense.weight"])
    assert torch.equal(sd["encoder.norm.weight"], hsd["videomae.layernorm.weight"])
    assert torch.equal(sd["decoder.head.weight"], hsd["decoder.head.weight"])
    n_enc = sum(k.startswith("encoder.") for k, _ in model.named_parameters())
    assert f"(hf, pretrain checkpoint): encoder {n_enc} tensors" in line


def test_classifier_checkpoint_gives_the_encoder_only(tmp_path):
    cfg = tiny_cfg()
    torch.manual_seed(5)
    clf = build_classifier("scratch", cfg, num_classes=5)
    path = export_model(clf, tmp_path / "clf.pth", config=cfg.to_dict())
    model = fresh(cfg, seed=6)
    untouched = fresh(cfg, seed=6).state_dict()
    line = init_pretrain_model(model, path, cfg)
    sd, csd = model.state_dict(), clf.state_dict()
    for k, v in csd.items():
        if k.startswith(("blocks.", "patch_embed.")):
            assert torch.equal(sd["encoder." + k], v), k
    for k in sd:  # the decoder and the final norm (the classifier has fc_norm instead) as built
        if not k.startswith(("encoder.blocks.", "encoder.patch_embed.")):
            assert torch.equal(sd[k], untouched[k]), k
    assert "not in the file: decoder (random init), encoder.norm (fresh LayerNorm)" in line
    assert "unused: fc_norm, head (4 tensors)" in line
    assert "decoder 0 tensors" in line and "encoder only" in line


def test_another_size_is_a_one_line_error_naming_the_shapes(tmp_path, capsys):
    path, _ = saved(tmp_path, tiny_cfg("model.name=mae_vit_tiny_patch16"), "tiny.pth")
    code = main(["pretrain", *TINY, f"train.output_dir={tmp_path}", "train.run_name=x",
                 f"train.init_from={path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("mgmae pretrain: error: train.init_from")
    assert "encoder.patch_embed.proj.weight (192, 3, 2, 16, 16) in the file vs (128, 3, 2, 8, 8)" in err
    assert not (tmp_path / "x").exists()


def test_a_resume_point_takes_precedence(tmp_path, capsys):
    """A preempted continued-pretraining run, requeued with the same command, resumes: it ends
    with the weights of the uninterrupted run (re-initialising from the file would not)."""
    cfg = tiny_cfg()
    path, _ = saved(tmp_path, cfg)
    extra = ["train.max_steps=5", "train.num_workers=0", "masking.name=tube", f"train.init_from={path}",
             "train.resume=auto"]
    full = pretrain(cfg_for(tmp_path, "full", *extra))
    with pytest.raises(Preempted):
        pretrain(cfg_for(tmp_path, "cut", *extra), stop_at_step=3)
    capsys.readouterr()
    resumed = pretrain(cfg_for(tmp_path, "cut", *extra))
    out = capsys.readouterr().out
    assert "train.init_from not used: resuming from" in out and "init_from " + str(path) not in out
    assert ckpt.load_checkpoint(resumed / "checkpoint-final.pth")["step"] == 5
    assert_same(weights(full), weights(resumed))
