"""Configuration: dotted overrides, YAML recipes, unknown keys, types, choices, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mgmae.config import Config, apply_overrides, load_config, parse_value, set_key, valid_keys

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [p for p in sorted({p.resolve() for p in (*ROOT.glob("configs/*.yaml"),
                                                     *ROOT.glob("src/mgmae/configs/*.yaml"))})
           if not p.name.startswith("study_")]  # study specs are not training recipes


# ----------------------------------------------------------------------------- override parsing

@pytest.mark.parametrize("text,value", [
    ("3", 3), ("0.5", 0.5), ("1.0e-3", 1e-3), ("true", True), ("false", False), ("null", None),
    ("[1, 2]", [1, 2]), ("[0.9,0.95]", [0.9, 0.95]), ("tube", "tube"), ("cuda:1", "cuda:1"),
])
def test_parse_value(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_overrides_set_typed_values():
    cfg = load_config(None, [
        "train.epochs=3", "train.lr=0.002", "train.compile=true", "data.flip=false",
        "train.max_steps=null", "train.betas=[0.9, 0.999]", "data.scales=[1, 0.5]",
        "masking.name=random", "train.device=cuda:1", "model.decoder_embed_dim=256",
        "train.blr=1", "train.epochs=5",  # later overrides win
    ])
    assert cfg.train.epochs == 5 and type(cfg.train.epochs) is int
    assert cfg.train.lr == 0.002 and type(cfg.train.lr) is float
    assert cfg.train.compile is True and cfg.data.flip is False
    assert cfg.train.max_steps is None
    assert cfg.train.betas == [0.9, 0.999]
    assert cfg.data.scales == [1.0, 0.5] and all(type(v) is float for v in cfg.data.scales)
    assert cfg.masking.name == "random"
    assert cfg.train.device == "cuda:1"
    assert cfg.model.decoder_embed_dim == 256
    assert cfg.train.blr == 1.0 and type(cfg.train.blr) is float  # int accepted for a float key


def test_optional_keys_accept_null_and_value():
    cfg = load_config(None, ["train.lr=0.001", "model.decoder_num_heads=8", "flow.size=112"])
    assert (cfg.train.lr, cfg.model.decoder_num_heads, cfg.flow.size) == (0.001, 8, 112)
    cfg = load_config(None, ["train.lr=null", "model.decoder_num_heads=null", "flow.size=null"])
    assert (cfg.train.lr, cfg.model.decoder_num_heads, cfg.flow.size) == (None, None, None)


@pytest.mark.parametrize("text", ["train.lr=1e-3", "train.min_lr=1e-6", "train.weight_decay=5e-2"])
def test_exponent_without_dot_is_a_float(text):
    key, value = text.split("=")
    cfg = load_config(None, [text])
    assert getattr(cfg.train, key.split(".")[1]) == float(value)


def test_override_without_equals_sign():
    with pytest.raises(ValueError, match="key=value"):
        load_config(None, ["train.epochs"])


def test_override_value_may_contain_equals():
    cfg = load_config(None, ["train.run_name=a=b"])
    assert cfg.train.run_name == "a=b"


# ----------------------------------------------------------------------------- recipe files

def test_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"name": "mae_vit_base_patch16", "decoder_depth": 4},
        "data": {"img_size": 224, "num_frames": 16},
        "masking": {"name": "tube", "mask_ratio": 0.9},
        "train": {"lr": 0.001, "epochs": 800, "betas": [0.9, 0.95]},
    }))
    cfg = load_config(recipe)
    assert cfg.model.name == "mae_vit_base_patch16" and cfg.data.img_size == 224
    assert cfg.train.lr == 0.001 and cfg.train.epochs == 800
    assert cfg.flow == Config().flow  # untouched sections keep the defaults
    cfg = load_config(recipe, ["train.lr=0.002", "masking.mask_ratio=0.75"])
    assert cfg.train.lr == 0.002 and cfg.masking.mask_ratio == 0.75
    assert cfg.train.epochs == 800  # the recipe still applies to what is not overridden


def test_recipe_errors_name_the_file_and_key(tmp_path):
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(KeyError) as e:
        load_config(bad_key)
    assert "bad_key.yaml" in str(e.value) and "train.lr" in str(e.value)

    bad_type = tmp_path / "bad_type.yaml"
    bad_type.write_text("train:\n  epochs: many\n")
    with pytest.raises(ValueError) as e:
        load_config(bad_type)
    assert "bad_type.yaml" in str(e.value) and "train.epochs" in str(e.value)

    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(not_mapping)

    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_empty_recipe_gives_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("")
    assert load_config(p) == Config()


@pytest.mark.skipif(not RECIPES, reason="no recipes in configs/ yet")
@pytest.mark.parametrize("recipe", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_load(recipe):
    from mgmae.models import list_models

    cfg = load_config(recipe)
    assert cfg.model.name in list_models()


# ----------------------------------------------------------------------------- unknown keys

@pytest.mark.parametrize("key,suggestion", [
    ("train.lrr", "train.lr"), ("masking.ratio", "masking.mask_ratio"),
    ("train.epoch", "train.epochs"), ("modle.name", "model.name"), ("lr", "train.lr"),
    ("data.num_frame", "data.num_frames"),
])
def test_unknown_key_suggests_closest(key, suggestion):
    with pytest.raises(KeyError) as e:
        load_config(None, [f"{key}=1"])
    msg = str(e.value)
    assert f"'{key}'" in msg and f"'{suggestion}'" in msg
    # the suggestion is the closest one: it comes first
    assert msg.index(f"'{suggestion}'") < min(
        (msg.index(f"'{k}'") for k in valid_keys() if f"'{k}'" in msg and k != suggestion),
        default=len(msg))


def test_set_key_rejects_section_and_too_deep_keys():
    cfg = Config()
    for key in ("train", "train.lr.x", ""):
        with pytest.raises(KeyError):
            set_key(cfg, key, 1)


# ----------------------------------------------------------------------------- types and values

@pytest.mark.parametrize("override,key", [
    ("train.epochs=abc", "train.epochs"), ("train.epochs=2.5", "train.epochs"),
    ("train.lr=fast", "train.lr"), ("train.compile=maybe", "train.compile"),
    ("data.flip=1", "data.flip"), ("train.betas=0.9", "train.betas"),
    ("data.scales=[1, big]", "data.scales"), ("model.name=[a, b]", "model.name"),
    ("masking.mask_ratio=true", "masking.mask_ratio"), ("flow.size=1.5", "flow.size"),
])
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(ValueError) as e:
        load_config(None, [override])
    assert key in str(e.value)


@pytest.mark.parametrize("key,allowed", [
    ("masking.name", ["random", "tube", "motion_guided"]),
    ("train.amp", ["auto", "bf16", "fp16", "none"]),
    ("data.sampling", ["dense", "segment"]),
    ("masking.warp", ["backward", "forward"]),
    ("model.pos_embed", ["sincos_1d", "sincos_3d"]),
])
def test_invalid_choice_lists_allowed(key, allowed):
    with pytest.raises(ValueError) as e:
        load_config(None, [f"{key}=foo"])
    msg = str(e.value)
    assert key in msg and "foo" in msg
    for a in allowed:
        assert a in msg


@pytest.mark.parametrize("ratio", ["1.5", "1.0", "0", "-0.2"])
def test_mask_ratio_out_of_range(ratio):
    with pytest.raises(ValueError, match="mask_ratio") as e:
        load_config(None, [f"masking.mask_ratio={ratio}"])
    assert str(float(ratio)) in str(e.value) or ratio in str(e.value)


def test_num_frames_not_divisible_by_tubelet():
    with pytest.raises(ValueError) as e:
        load_config(None, ["data.num_frames=15"])
    assert "num_frames=15" in str(e.value) and "tubelet_size=2" in str(e.value)
    with pytest.raises(ValueError, match="tubelet_size=3"):
        load_config(None, ["model.tubelet_size=3"])  # 16 frames, tubelet 3
    assert load_config(None, ["data.num_frames=15", "model.tubelet_size=3"]).data.num_frames == 15


@pytest.mark.parametrize("override", ["train.batch_size=0", "data.num_frames=0", "train.epochs=-1",
                                      "train.betas=[0.9]"])
def test_other_invalid_values(override):
    with pytest.raises(ValueError, match=override.split("=")[0].split(".")[1]):
        load_config(None, [override])


# ----------------------------------------------------------------------------- round trip

def test_resolved_config_round_trip(tmp_path):
    cfg = load_config(None, ["model.name=mae_vit_small_patch16", "train.lr=0.0003",
                             "train.betas=[0.9, 0.999]", "data.scales=[1.0, 0.8]",
                             "masking.name=motion_guided", "flow.size=112", "train.run_name=x"])
    path = tmp_path / "resolved.yaml"
    cfg.save(path)
    again = load_config(path)
    assert again == cfg
    assert again.to_yaml() == cfg.to_yaml()
    assert Config.from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def test_defaults_round_trip_and_keys():
    cfg = Config()
    assert Config.from_dict(cfg.to_dict()) == cfg
    keys = valid_keys()
    assert "train.lr" in keys and "masking.mask_ratio" in keys
    assert all(k.count(".") == 1 for k in keys)


def test_apply_overrides_accepts_a_dict():
    cfg = apply_overrides(Config(), {"train.epochs": 2, "masking.mask_ratio": 0.8})
    assert cfg.train.epochs == 2 and cfg.masking.mask_ratio == 0.8


# ----------------------------------------------------------------------------- packaged recipes

def test_recipes_live_in_the_package_and_configs_points_there():
    from mgmae.config import RECIPES_DIR, list_recipes

    assert RECIPES_DIR == ROOT / "src" / "mgmae" / "configs"
    assert (ROOT / "configs").resolve() == RECIPES_DIR  # old paths (configs/demo.yaml) still work
    names = list_recipes()
    assert {"demo", "pretrain_vit_base_ssv2", "finetune_vit_base_ssv2"} <= set(names)
    assert set(names) == {p.stem for p in RECIPES_DIR.glob("*.yaml")}
    assert names["pretrain_vit_base_ssv2"].startswith("Pre-training ViT-B on Something-Something V2")


@pytest.mark.parametrize("spec", ["pretrain_vit_base_ssv2", "pretrain_vit_base_ssv2.yaml",
                                  "configs/pretrain_vit_base_ssv2.yaml"])
def test_recipe_by_name_or_path(spec, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = load_config(spec, ["train.epochs=3"])
    assert cfg == load_config(ROOT / "src/mgmae/configs/pretrain_vit_base_ssv2.yaml", ["train.epochs=3"])
    assert cfg.model.name == "mae_vit_base_patch16" and cfg.train.epochs == 3


def test_a_file_wins_over_a_recipe_of_the_same_name(tmp_path, monkeypatch):
    (tmp_path / "demo").write_text("train:\n  epochs: 7\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("demo").train.epochs == 7
    assert load_config("demo.yaml").model.name == "mae_vit_nano_patch8"  # no such file: the recipe


def test_unknown_recipe_is_one_line_with_suggestion(tmp_path, monkeypatch):
    from mgmae.config import list_recipes

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as e:
        load_config("pretrain_vit_base_ssv3")
    msg = e.value.args[0]
    assert "\n" not in msg and "pretrain_vit_base_ssv3" in msg
    assert "Did you mean 'pretrain_vit_base_ssv2'?" in msg
    assert all(name in msg for name in list_recipes())
    with pytest.raises(FileNotFoundError, match="elsewhere/demo.yaml"):
        load_config("elsewhere/demo.yaml")  # a path with a folder is a path, never a recipe name


# ----------------------------------------------------------------------------- flow (RAFT) keys

@pytest.mark.parametrize("override,key,allowed", [
    ("flow.batch_size=0", "flow.batch_size", ">= 1"), ("flow.batch_size=-3", "flow.batch_size", ">= 1"),
    ("flow.amp=fp8", "flow.amp", "auto, bf16, fp16, none"), ("flow.iters=0", "flow.iters", "null"),
])
def test_flow_keys_bad_values_name_the_key_and_what_is_allowed(override, key, allowed):
    with pytest.raises(ValueError) as e:
        load_config(None, [override])
    assert key in str(e.value) and allowed in str(e.value)


def test_flow_defaults_and_recipes():
    cfg = load_config(None)
    assert (cfg.flow.iters, cfg.flow.batch_size, cfg.flow.amp) == (None, 32, "auto")
    assert cfg.flow.weights is None  # random weights are never a default
    cfg = load_config("pretrain_vit_base_ssv2", ["flow.iters=12", "flow.amp=bf16", "flow.weights=random"])
    assert (cfg.flow.iters, cfg.flow.amp, cfg.flow.weights) == (12, "bf16", "random")
    assert load_config("pretrain_vit_base_ssv2").flow.iters is None  # the model's standard
