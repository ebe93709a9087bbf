"""``data.synthetic_speed``: faster synthetic motion, with speed 1 exactly the built-in videos."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgmae.config import load_config
from mgmae.data.synthetic import SyntheticVideos, synthetic_videos
from mgmae.experiments.runs import _cfg_hash


def test_speed_one_is_the_built_in_videos_and_speed_k_scales_every_velocity():
    base, same = SyntheticVideos(4, 8, 32, seed=3), SyntheticVideos(4, 8, 32, seed=3, speed=1.0)
    fast = SyntheticVideos(4, 8, 32, seed=3, speed=2.5)
    for i in range(4):
        a, b, c = base[i], same[i], fast[i]
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.layers, b.layers)
        assert np.allclose(c.velocities, 2.5 * np.asarray(a.velocities))  # same draws, scaled
        assert c.motion_label == a.motion_label and c.appearance_label == a.appearance_label
        # the exact flow follows: a pixel on the main object moves 2.5x as far
        top = len(c.velocities) - 1
        ys, xs = np.nonzero(c.layers[0] == top)
        f = c.flow(0, 1)
        assert torch.allclose(f[:, ys[0], xs[0]], torch.as_tensor(c.velocities[top], dtype=f.dtype), atol=1e-5)


def test_the_config_key_reaches_the_videos_and_the_study_hash_ignores_its_default():
    cfg = load_config(None, ["data.synthetic_speed=3", "data.synthetic_videos=2"])
    v = synthetic_videos(cfg.data)
    assert v.speed == 3.0 and len(v) == 2
    held_out = synthetic_videos(cfg.data, 5, seed_offset=1)
    assert held_out.seed == cfg.data.synthetic_seed + 1 and len(held_out) == 5
    default = load_config(None, [])
    assert _cfg_hash(default) == _cfg_hash(load_config(None, ["data.synthetic_speed=1.0"]))
    assert _cfg_hash(default) != _cfg_hash(load_config(None, ["data.synthetic_speed=2"]))
    with pytest.raises(ValueError, match="data.synthetic_speed"):
        load_config(None, ["data.synthetic_speed=0"])
