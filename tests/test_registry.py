"""One registry per concept: config validation asks the masker and flow registries, so a masker
or flow added with register_masker / register_flow is a valid config value and pre-training uses it;
the motion-guided options have one list of allowed values, shared by the masker and the config."""

from __future__ import annotations

import pytest
import torch

from mgmae.config import load_config
from mgmae.masking import MOTION_GUIDED_CHOICES, build_masker, list_maskers, register_masker
from mgmae.masking.tube import TubeMasker
from mgmae.registry import FLOWS, MASKERS

TINY = ["data.synthetic_videos=8", "data.num_frames=4", "data.img_size=32", "train.batch_size=4",
        "train.warmup_epochs=1", "train.vis_clips=1", "train.baseline_clips=4",
        "train.tensorboard=false", "train.lr=1e-3", "masking.mask_ratio=0.75",
        "train.num_workers=0", "train.max_steps=1"]


@pytest.fixture
def clean_registries(monkeypatch):
    """Whatever a test registers is gone afterwards."""
    monkeypatch.setattr(MASKERS, "_entries", dict(MASKERS._entries))
    monkeypatch.setattr(FLOWS, "_entries", dict(FLOWS._entries))


class FirstSliceMasker(TubeMasker):
    """Tube masking that keeps the same cubes of every slice visible (the lowest indices); counts
    its calls so a test can see it was used."""

    name = "first_cubes"
    calls = 0

    def _mask(self, clip, batch, generator):
        type(self).calls += 1
        mask = torch.ones(batch, self.num_tokens, dtype=torch.bool)
        k = self.tokens_per_slice - (self.num_masked // self.grid[0])
        for t in range(self.grid[0]):
            mask[:, t * self.tokens_per_slice:t * self.tokens_per_slice + k] = False
        return mask


def test_a_registered_masker_is_a_config_value_and_pretraining_uses_it(clean_registries, tmp_path):
    from mgmae.engine.pretrain import masker_from_config, pretrain

    with pytest.raises(ValueError, match="masking.name"):
        load_config(None, ["masking.name=first_cubes"])  # not registered yet
    register_masker("first_cubes", FirstSliceMasker)
    assert "first_cubes" in list_maskers()
    cfg = load_config(None, [*TINY, "masking.name=first_cubes", f"train.output_dir={tmp_path}",
                             "train.run_name=r"])
    masker = masker_from_config(cfg, patch_size=8, seed=0)  # the path pre-training takes
    assert isinstance(masker, FirstSliceMasker)
    assert (masker.input_size, masker.mask_ratio) == ((4, 32, 32), 0.75)
    FirstSliceMasker.calls = 0
    run = pretrain(cfg)
    assert FirstSliceMasker.calls > 0 and (run / "checkpoint-final.pth").exists()


def test_unknown_masker_lists_the_registry(clean_registries):
    register_masker("mine", FirstSliceMasker)
    with pytest.raises(ValueError) as e:
        load_config(None, ["masking.name=tubee"])
    msg = e.value.args[0]
    assert "masking.name" in msg and "tubee" in msg and "\n" not in msg
    for name in ("random", "tube", "motion_guided", "mine"):
        assert name in msg
    with pytest.raises(ValueError, match="Did you mean 'tube'"):
        build_masker("tubee")


def test_flow_names_come_from_the_registry(clean_registries):
    from mgmae.flow import build_flow, list_flows, register_flow

    for name in (*list_flows(), "gt"):  # every estimator, and the synthetic data's exact flow
        assert load_config(None, [f"flow.name={name}"]).flow.name == name
    with pytest.raises(ValueError) as e:
        load_config(None, ["flow.name=diss"])
    msg = e.value.args[0]
    assert "flow.name" in msg and "'diss'" in msg and "gt" in msg
    assert all(name in msg for name in ("dis", "farneback", "raft_small", "raft_large", "zero"))

    def ones(**options):
        return lambda src, dst: torch.ones(src.shape[0], 2, *src.shape[2:])

    register_flow("ones", ones)
    assert "ones" in list_flows() and load_config(None, ["flow.name=ones"]).flow.name == "ones"
    frames = torch.rand(2, 3, 8, 8)
    assert torch.equal(build_flow("ones")(frames, frames), torch.ones(2, 2, 8, 8))
    masker = build_masker("motion_guided", input_size=(4, 16, 16), patch_size=8, flow="ones")
    assert masker(torch.rand(3, 4, 16, 16)).shape == (8,)  # (4/2) x (16/8) x (16/8) cubes


def test_a_name_registered_when_its_home_module_loads_is_found():
    from mgmae.registry import Registry

    reg = Registry("thing", "mgmae.masking", {})  # mgmae.masking registers nothing here
    assert "x" not in reg and reg.names() == []
    reg.register("x", "mgmae.masking.tube:TubeMasker")  # lazy: imported on first use
    assert "x" in reg and reg.get("x") is TubeMasker
    with pytest.raises(TypeError):
        reg.register("y", 3)


@pytest.mark.parametrize("option", sorted(MOTION_GUIDED_CHOICES))
def test_motion_guided_options_have_one_definition(option):
    from mgmae.masking.motion_guided import MotionGuidedMasker

    for value in MOTION_GUIDED_CHOICES[option]:  # every allowed value passes both checks
        assert getattr(load_config(None, [f"masking.{option}={value}"]).masking, option) == value
        m = MotionGuidedMasker(input_size=(4, 16, 16), patch_size=8, flow="zero", **{option: value})
        assert getattr(m, option) == value
    with pytest.raises(ValueError, match=f"masking.{option}") as e:  # and the config lists them
        load_config(None, [f"masking.{option}=bogus"])
    assert all(v in e.value.args[0] for v in MOTION_GUIDED_CHOICES[option])
    with pytest.raises(ValueError, match=option):
        MotionGuidedMasker(input_size=(4, 16, 16), patch_size=8, flow="zero", **{option: "bogus"})


def test_imagenet_statistics_have_one_definition():
    import mgmae.masking.motion_guided as mg
    import mgmae.models.mae as mae
    from mgmae.data import transforms

    assert mae.IMAGENET_MEAN is transforms.IMAGENET_MEAN is mg.IMAGENET_MEAN
    assert mae.IMAGENET_STD is transforms.IMAGENET_STD is mg.IMAGENET_STD
