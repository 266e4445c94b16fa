"""Shared fixtures: a tiny real offline dataset built from the shipped behaviour policies."""

from __future__ import annotations


import pytest
import torch

from envs.mamujoco_render import use_offscreen_gl
from helpers import tiny_run_of

# MuJoCo fixes its OpenGL backend when it is first imported: pick an offscreen one that works
# here (EGL or OSMesa; none is fine) before any test imports it, for the rendered replays.
use_offscreen_gl()

# Test tensors are tiny: one intra-op thread avoids oversubscribing the cores (2 in CI) when the
# simulator or another job is busy, which slows small kernels several-fold.
torch.set_num_threads(1)
torch.set_flush_denormal(True)

TASKSET_YAML = """name: tiny-marine
family: smac
description: two training maps for tests
train_tasks: [smac:3m, smac:5m_vs_6m]
test_tasks: [smac:12m, smac:13m_vs_15m]
qualities: [expert]
env_options: {}
"""


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """(task-set YAML, data root): expert datasets of smac:3m and smac:5m_vs_6m, 24 episodes
    each, collected on SMAX from marl/policies."""
    from marl.collect import build_taskset

    root = tmp_path_factory.mktemp("tiny-data")
    taskset = root / "tiny-marine.yaml"
    taskset.write_text(TASKSET_YAML)
    build_taskset(str(taskset), "expert", 24, out=root / "data", num_envs=24, log=lambda s: None)
    return taskset, root / "data"


@pytest.fixture(scope="session")
def dataset(tiny_data):
    from marl.data.loader import MultiTaskDataset

    taskset, root = tiny_data
    return MultiTaskDataset.from_taskset(str(taskset), "expert", root)


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory):
    return tiny_run_of(tiny_data, tmp_path_factory.mktemp("runs") / "hissd")
