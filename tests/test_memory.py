"""What agents remember (``model.agent_tokens``, ``model.history``): the tokens' values, and
acting step by step rebuilds exactly the tokens training reads from the episode at once."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import fit
from marl.algos.bc import BC, BCConfig
from marl.algos.common import take_view_steps, transitions
from marl.algos.hissd import HiSSD, HissdConfig
from marl.rollout import evaluate_task
from marl.nets import family_spec, with_agent_tokens

TINY_HISSD = HissdConfig(dim=16, ffn_mult=2, hidden=32, skill_dim=16, mixer_dim=8,
                         contrastive_samples=16, steps_per_episode=4, agent_tokens=True,
                         history=3)
TINY_BC = BCConfig(dim=16, ffn_mult=2, hidden=32, steps_per_episode=4, agent_tokens=True,
                   history=3)


def _random_data(tmp_path, tasks):
    from helpers import write_random
    from marl.data.loader import MultiTaskDataset

    return MultiTaskDataset({t: [write_random(tmp_path / f"{i}.h5", t, episodes=6, seed=i)]
                             for i, t in enumerate(tasks)})


def test_smac_agent_tokens_carry_the_id_and_the_compact_last_action(dataset):
    spec = family_spec("smac")
    batch = dataset.sample(1, task="smac:3m", generator=torch.Generator().manual_seed(0))
    view = take_view_steps(batch.obs, torch.tensor([[3]]), torch.tensor([0]))  # [1, 1, 3 agents, ...]
    obs = spec.obs_tokens(view)
    # agent 0: nothing yet; agent 1: moved north (action 2); agent 2: attacked enemy 1 (7)
    tokens = with_agent_tokens(spec, obs, view, torch.tensor([[[-1, 2, 7]]]))
    assert [g.shape[-1] for g in tokens.groups] == list(spec.agent_token_dims())
    own = tokens.groups[0][0, 0, :, 0]
    f_own = spec.obs_dims[0]
    torch.testing.assert_close(own[:, :f_own], obs.groups[0][0, 0, :, 0])
    ids = own[:, f_own:f_own + 4]
    assert ids.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]]  # binary of 1, 2, 3
    compact = own[:, f_own + 4:]
    assert compact.tolist() == [[0] * 7, [0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 1]]
    attacked = tokens.groups[2][0, 0, :, :, -1]  # [agent, enemy]
    assert attacked.tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]
    torch.testing.assert_close(tokens.groups[1], obs.groups[1])  # allies gain nothing


def test_mujoco_agent_tokens_give_each_joint_its_last_command(tmp_path):
    ds = _random_data(tmp_path, ["mamujoco:HalfCheetah-2x3"])
    spec = family_spec("mamujoco")
    batch = ds.sample(1, generator=torch.Generator().manual_seed(0))
    view = take_view_steps(batch.obs, torch.tensor([[2]]), torch.tensor([0]))
    commands = torch.tensor([[[[0.1, -0.2, 0.3], [0.4, 0.5, -0.6]]]])
    tokens = with_agent_tokens(spec, spec.obs_tokens(view), view, commands)
    joints, driven = tokens.groups[1][0, 0, ..., -1], view.token_action[0, 0]
    for agent in range(2):
        for token in range(joints.shape[-1]):
            a = int(driven[agent, token])
            expected = float(commands[0, 0, agent, a]) if a >= 0 else 0.0
            assert float(joints[agent, token]) == pytest.approx(expected)


def test_more_agents_than_the_id_bits_hold_is_one_clear_error(dataset):
    spec = family_spec("smac")
    batch = dataset.sample(1, task="smac:3m", generator=torch.Generator().manual_seed(0))
    view = take_view_steps(batch.obs, torch.tensor([[0]]), torch.tensor([0]))
    wide = view.map(lambda x: x.repeat_interleave(6, dim=2))  # 18 agents
    with pytest.raises(ValueError, match="at most 15 agents; this task has 18"):
        with_agent_tokens(spec, spec.obs_tokens(wide), wide, torch.zeros(1, 1, 18).long())


@pytest.mark.parametrize("family", ["smac", "mpe", "mamujoco"])
@pytest.mark.parametrize("algo", ["hissd", "bc"])
def test_acting_step_by_step_rebuilds_the_training_tokens(dataset, tmp_path, family, algo):
    """An episode replayed through ``observe``/``remember`` (as the evaluator does) gives, at
    every step, the observation and history tokens ``transitions`` reads from the data."""
    if family == "smac":
        ds = dataset
    else:
        ds = _random_data(tmp_path, {"mpe": ["mpe:spread-3"],
                                     "mamujoco": ["mamujoco:HalfCheetah-2x3"]}[family])
    spec = family_spec(family)
    model = (HiSSD(spec, TINY_HISSD) if algo == "hissd" else BC(spec, TINY_BC)).eval()
    batch = ds.sample(1, task=ds.tasks[0], generator=torch.Generator().manual_seed(2))
    tr = transitions(batch, spec, 0, cfg=model.cfg)  # every transition of the episode, in order
    memory = None
    for t in range(len(tr.step_mask)):
        view = take_view_steps(batch.obs, torch.tensor([[t]]), torch.tensor([0]))
        obs, past = model.observe(view, memory)
        for got, want in zip(obs.groups + past.groups, tr.obs.groups + tr.past.groups):
            torch.testing.assert_close(got[0, 0], want[t, 0], msg=f"step {t}")
        for got, want in zip(obs.masks + past.masks, tr.obs.masks + tr.past.masks):
            assert torch.equal(got[0, 0], want[t, 0]), f"step {t}"
        memory = model.remember(memory, view, batch.actions[:1, t:t + 1])
    assert t >= 3 and bool(tr.past.masks[0][-1].all()) and not tr.past.masks[0][0].any()


def test_without_memory_nothing_is_remembered(dataset):
    model = HiSSD(family_spec("smac"), replace(TINY_HISSD, agent_tokens=False, history=0))
    batch = dataset.sample(1, task="smac:3m", generator=torch.Generator().manual_seed(0))
    view = take_view_steps(batch.obs, torch.tensor([[0]]), torch.tensor([0]))
    assert model.remember(None, view, batch.actions[:1, :1]) is None
    obs, past = model.observe(view)
    assert past is None and [g.shape[-1] for g in obs.groups] == list(model.spec.obs_dims)


def test_history_reaches_the_common_skills_and_actions(dataset):
    """The planner reads the past own tokens: other pasts give other common skills."""
    torch.manual_seed(0)
    model = HiSSD(family_spec("smac"), TINY_HISSD)
    fit(model, [dataset.sample(8, task=t, generator=torch.Generator().manual_seed(0))
                for t in dataset.tasks], 20)
    tr = transitions(dataset.sample(8, task="smac:3m", generator=torch.Generator().manual_seed(1)),
                     model.spec, 4, torch.Generator().manual_seed(2), cfg=model.cfg)
    with torch.no_grad():
        common = model.common_skill_tokens(tr.obs, tr.past)[0]
        rolled = type(tr.past)([tr.past.groups[0].roll(1, dims=0)], [tr.past.masks[0].roll(1, 0)])
        other = model.common_skill_tokens(tr.obs, rolled)[0]
    assert (common - other).abs().max() > 1e-3


@pytest.mark.parametrize("algo", ["hissd", "bc"])
def test_with_memory_models_learn_and_play_unseen_maps(dataset, algo):
    torch.manual_seed(0)
    spec = family_spec("smac")
    model = HiSSD(spec, TINY_HISSD) if algo == "hissd" else BC(spec, TINY_BC)
    history = fit(model, [dataset.sample(8, task=t, generator=torch.Generator().manual_seed(0))
                          for t in dataset.tasks], 40)
    assert history[-1]["bc"] < 0.7 * history[0]["bc"]
    result = evaluate_task(model, "smac:12m", episodes=2, seed=0)
    assert result["episodes"] == 2 and np.isfinite(result["return_mean"])


@pytest.mark.parametrize("algo", ["odis", "updet"])
def test_history_on_an_algorithm_without_it_is_one_config_error(algo):
    from marl.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=f"model.history=2: only hissd, bc read past steps, "
                                          f"{algo} does not"):
        load_config(None, [f"algo={algo}", "model.history=2"])
    assert load_config(None, [f"algo={algo}", "model.agent_tokens=true"]).model.agent_tokens
