"""marl.data.loader on small real SMAX datasets: entity tokens, masks, multi-task padding,
subsets, reproducibility, validation and memory accounting."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from envs.core import EnvError
from envs.smac import parse_map
from marl.data.format import DatasetError, read_dataset
from marl.data.loader import EntityBatch, MultiTaskDataset, TaskData
from marl.data.paths import dataset_path, quality_paths
from marl.entity.smac import parse_smac_obs, parse_smac_state

from helpers import N_EPISODES, record_random, write_random



@contextlib.contextmanager
def copy_h5(src_path, dst_path):
    """Copy an HDF5 file's datasets and attributes, then yield the copy open for editing."""
    with h5py.File(src_path, "r") as src, h5py.File(dst_path, "w") as dst:
        for k in src:
            dst.create_dataset(k, data=src[k][()])
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        yield dst

@pytest.fixture(scope="module")
def recorded():
    """Random episodes of 3m and 5m_vs_6m (recorded once for the module)."""
    return {
        "smac:3m": record_random("smac:3m", N_EPISODES, seed=0),
        "smac:5m_vs_6m": record_random("smac:5m_vs_6m", N_EPISODES, seed=1),
    }


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, recorded):
    root = tmp_path_factory.mktemp("data")
    for task, rec in recorded.items():
        write_random(dataset_path(root, task, "medium"), task, arrays=rec)
    return root


def _tokens_of(arrays: dict, task: str, episodes: np.ndarray, t_max: int):
    lay = parse_map(task.split(":")[1])
    obs = torch.from_numpy(arrays["obs"][episodes, :t_max])
    state = torch.from_numpy(arrays["state"][episodes, :t_max])
    return parse_smac_obs(obs, lay), parse_smac_state(state, lay)


# --------------------------------------------------------------------------- paths
def test_dataset_path_convention(tmp_path):
    assert dataset_path(tmp_path, "smac:5m_vs_6m", "medium-expert") == \
        tmp_path / "smac_5m_vs_6m" / "medium-expert.h5"
    assert dataset_path("d", "smac:3m", "medium_replay") == Path("d/smac_3m/medium-replay.h5")
    with pytest.raises(DatasetError, match="quality"):
        dataset_path(tmp_path, "smac:3m", "great")
    with pytest.raises(EnvError, match="family"):
        dataset_path(tmp_path, "nope:3m", "medium")
    with pytest.raises(DatasetError, match="does not exist"):
        quality_paths(tmp_path, "smac:3m", "expert")
    with pytest.raises(DatasetError, match=r"smac_3m\+enemy_reaction=0\.8.medium\.h5 does not exist"):
        MultiTaskDataset.from_taskset("marine-hard", "medium", tmp_path)


def test_dataset_path_is_tagged_with_env_options(tmp_path):
    options = {"enemy_reaction": 0.8, "enemy_attack_mode": "random"}
    assert dataset_path(tmp_path, "smac:3m", "expert", options) == \
        tmp_path / "smac_3m+enemy_attack_mode=random+enemy_reaction=0.8" / "expert.h5"
    assert dataset_path(tmp_path, "smac:3m", "expert", {}) == tmp_path / "smac_3m" / "expert.h5"


def test_data_of_another_opponent_is_rejected(data_dir, tmp_path):
    """Files record the simulator options they were collected under; a task set asking for
    other options gets a DatasetError naming the file, the attribute and the option."""
    path = dataset_path(data_dir, "smac:3m", "medium")
    for same in ({}, {"enemy_reaction": 1.0}, {"enemy_attack_mode": "closest"}):
        MultiTaskDataset({"smac:3m": [path]}, env_options=same, n_episodes=2)
    with pytest.raises(DatasetError, match=r"medium\.h5.*'env_options'.*enemy_reaction.*\(1\.0, 0\.8\)"):
        MultiTaskDataset({"smac:3m": [path]}, env_options={"enemy_reaction": 0.8})

    taskset = tmp_path / "delayed.yaml"
    taskset.write_text("name: delayed\nfamily: smac\ntrain_tasks: [smac:3m]\n"
                       "test_tasks: [smac:4m]\nqualities: [medium]\n"
                       "env_options: {enemy_reaction: 0.8}\n")
    with pytest.raises(DatasetError, match=r"smac_3m\+enemy_reaction=0\.8.medium\.h5 does not exist"):
        MultiTaskDataset.from_taskset(str(taskset), "medium", data_dir)
    misplaced = dataset_path(tmp_path / "data", "smac:3m", "medium", {"enemy_reaction": 0.8})
    misplaced.parent.mkdir(parents=True)
    misplaced.write_bytes(path.read_bytes())
    with pytest.raises(DatasetError, match="enemy_reaction"):
        MultiTaskDataset.from_taskset(str(taskset), "medium", tmp_path / "data")


# --------------------------------------------------------------------------- tokens
def test_single_task_tokens_equal_parser_on_raw_arrays(data_dir, recorded):
    ds = MultiTaskDataset.from_dir(data_dir, ["smac:3m"], "medium")
    td = ds.data["smac:3m"]
    arrays = recorded["smac:3m"][0]
    assert td.n_episodes == N_EPISODES
    assert td.episode_index.tolist() == list(range(N_EPISODES))
    picks = torch.tensor([5, 0, 11, 3])
    batch = td.batch(picks)
    lengths = arrays["filled"][picks.numpy(), :, 0].sum(1)
    t_max = int(lengths.max())
    assert batch.max_t == t_max and batch.batch_size == 4
    obs, state = _tokens_of(arrays, "smac:3m", picks.numpy(), t_max)
    for name in ("own", "allies", "enemies", "ally_mask", "enemy_mask"):
        assert torch.equal(getattr(batch.obs, name), getattr(obs, name)), name
    for name in ("allies", "enemies", "ally_mask", "enemy_mask"):
        assert torch.equal(getattr(batch.state, name), getattr(state, name)), name
    raw = {k: torch.from_numpy(v[picks.numpy(), :t_max]) for k, v in arrays.items()}
    assert torch.equal(batch.actions, raw["actions"][..., 0])
    assert batch.actions.dtype == torch.long and batch.avail_actions.dtype == torch.bool
    filled = raw["filled"][..., 0].bool()
    assert torch.equal(batch.avail_actions[filled], raw["avail_actions"][filled].bool())
    assert torch.equal(batch.reward, raw["reward"][..., 0])
    assert torch.equal(batch.terminated, raw["terminated"][..., 0].float())
    assert torch.equal(batch.filled, raw["filled"][..., 0].float())
    # mask: ODIS's filled * (1 - terminated shifted by one), restricted to transitions t < L-1
    assert raw["terminated"].any()  # the random team loses: real terminations are covered
    odis = raw["filled"][..., 0].float().clone()
    odis[:, 1:] *= 1 - raw["terminated"][:, :-1, 0].float()
    steps = torch.arange(t_max)
    transitions = steps[None] < torch.from_numpy(lengths - 1)[:, None]
    assert torch.equal(batch.mask, odis * transitions)
    assert torch.equal(batch.mask.sum(1), torch.from_numpy(lengths - 1).float())
    # returns over the masked rewards equal the file's returns
    assert torch.allclose((batch.reward * batch.mask).sum(1).double(),
                          td.returns[picks], atol=1e-5)
    assert batch.agent_mask.all() and batch.agent_mask.shape == (4, 3)


def test_padding_is_masked_and_does_not_leak(tmp_path, recorded):
    arrays, wins, info = recorded["smac:3m"]
    path = write_random(tmp_path / "a.h5", "smac:3m", arrays=(arrays, wins, info))
    td = TaskData("smac:3m", read_dataset(path))
    picks = torch.arange(N_EPISODES)
    batch = td.batch(picks, t_max=info.episode_limit + 1)
    lengths = torch.from_numpy(arrays["filled"][..., 0].sum(1))
    steps = torch.arange(info.episode_limit + 1)
    padded = steps[None] >= lengths[:, None]
    post = steps[None] == (lengths - 1)[:, None]
    assert padded.any()
    assert (batch.mask[padded] == 0).all() and (batch.filled[padded] == 0).all()
    assert (batch.mask[post] == 0).all() and (batch.filled[post] == 1).all()
    # padded steps: zero features, action 0, only action 0 available (finite log-softmax)
    assert (batch.obs.own[padded] == 0).all() and (batch.state.allies[padded] == 0).all()
    assert (batch.actions[padded] == 0).all() and (batch.reward[padded] == 0).all()
    assert batch.avail_actions[padded][..., 0].all()
    assert not batch.avail_actions[padded][..., 1:].any()
    logits = torch.randn(batch.avail_actions.shape).masked_fill(~batch.avail_actions, -float("inf"))
    assert torch.isfinite(torch.log_softmax(logits, -1).max(-1).values).all()

    # Changing what sits in the padding of the raw arrays changes nothing (written without
    # verification: the format forbids non-zero padding).
    noisy = {k: v.copy() for k, v in arrays.items()}
    pad_np = padded.numpy()
    for key in ("obs", "state", "reward", "actions_onehot"):
        noisy[key][pad_np] = 7.0
    noisy["actions"][pad_np] = 2
    path2 = tmp_path / "b.h5"
    with h5py.File(path, "r") as src, h5py.File(path2, "w") as dst:
        for k, v in noisy.items():
            dst.create_dataset(k, data=v)
        dst.create_dataset("battle_won", data=src["battle_won"][()])
        for k, v in src.attrs.items():
            if k not in ("checksum", "checksums"):
                dst.attrs[k] = v
    other = TaskData("smac:3m", read_dataset(path2, verify=False)).batch(
        picks, t_max=info.episode_limit + 1)
    m = batch.filled.bool()
    for name in ("own", "allies", "enemies"):
        assert torch.equal(getattr(batch.obs, name)[m], getattr(other.obs, name)[m])
    for name in ("actions", "reward", "terminated", "mask", "filled"):
        assert torch.equal(getattr(batch, name), getattr(other, name)), name
    assert torch.equal(batch.state.allies, other.state.allies)


# --------------------------------------------------------------------------- multi-task
def test_multi_task_batch_pads_agents_enemies_and_actions(data_dir, recorded):
    ds = MultiTaskDataset.from_dir(data_dir, ["smac:3m", "smac:5m_vs_6m"], "medium")
    assert ds.tasks == ("smac:3m", "smac:5m_vs_6m")
    assert ds.task_ids == {"smac:3m": 0, "smac:5m_vs_6m": 1}
    g = torch.Generator().manual_seed(3)
    batch = ds.sample(4, generator=g)
    assert isinstance(batch, EntityBatch)
    b, t = 8, batch.max_t
    assert batch.task_id.tolist() == [0] * 4 + [1] * 4
    assert batch.obs.own.shape[:3] == (b, t, 5)
    assert batch.obs.allies.shape[:4] == (b, t, 5, 4)
    assert batch.obs.enemies.shape[:4] == (b, t, 5, 6)
    assert batch.state.allies.shape[:3] == (b, t, 5) and batch.state.enemies.shape[:3] == (b, t, 6)
    assert batch.actions.shape == (b, t, 5) and batch.avail_actions.shape == (b, t, 5, 12)
    small, big = slice(0, 4), slice(4, 8)
    assert batch.agent_mask[small].tolist() == [[True] * 3 + [False] * 2] * 4
    assert batch.agent_mask[big].all()
    # 3m rows: real agents see 2 allies and 3 enemies, padded agents see nothing
    am, em = batch.obs.ally_mask[small], batch.obs.enemy_mask[small]
    assert am[:, :, :3, :2].all() and not am[:, :, :3, 2:].any() and not am[:, :, 3:].any()
    assert em[:, :, :3, :3].all() and not em[:, :, :3, 3:].any() and not em[:, :, 3:].any()
    assert (batch.obs.own[small][:, :, 3:] == 0).all()
    assert batch.obs.enemy_mask[big].all() and batch.obs.ally_mask[big].all()
    sm, se = batch.state.ally_mask[small], batch.state.enemy_mask[small]
    assert sm[..., :3].all() and not sm[..., 3:].any()
    assert se[..., :3].all() and not se[..., 3:].any()
    # padded enemies are never attackable; padded agents may only no-op
    assert not batch.avail_actions[small][..., 9:].any()
    assert batch.avail_actions[small][:, :, 3:, 0].all()
    assert not batch.avail_actions[small][:, :, 3:, 1:].any()
    assert (batch.actions[small][:, :, 3:] == 0).all()
    # each task's rows equal its own single-task batch, padded
    for rows, task in ((small, "smac:3m"), (big, "smac:5m_vs_6m")):
        td = ds.data[task]
        g2 = torch.Generator().manual_seed(3)
        picks = [torch.randperm(d.n_episodes, generator=g2)[:4] for d in ds.data.values()]
        own = td.batch(picks[ds.task_ids[task]], t)
        a, e = td.n_agents, td.n_entities
        assert torch.equal(batch.obs.enemies[rows][:, :, :a, :e], own.obs.enemies)
        assert torch.equal(batch.state.allies[rows][:, :, :a], own.state.allies)
        assert torch.equal(batch.avail_actions[rows][:, :, :a, :6 + e], own.avail_actions)
        assert torch.equal(batch.mask[rows], own.mask)
    # time padding: T is the longest episode in the whole batch
    assert t == int(batch.filled.sum(1).max())
    # single task through the dataset keeps the task's own sizes and id
    one = ds.sample(3, task="smac:5m_vs_6m")
    assert one.obs.own.shape[2] == 5 and one.task_id.tolist() == [1, 1, 1]


def test_same_seed_same_batch(data_dir):
    ds = MultiTaskDataset.from_dir(data_dir, ["smac:3m", "smac:5m_vs_6m"], "medium")
    a = ds.sample(5, generator=torch.Generator().manual_seed(11))
    b = ds.sample(5, generator=torch.Generator().manual_seed(11))
    c = ds.sample(5, generator=torch.Generator().manual_seed(12))
    for name in ("own", "allies", "enemies", "ally_mask", "enemy_mask"):
        assert torch.equal(getattr(a.obs, name), getattr(b.obs, name))
    for name in ("actions", "avail_actions", "reward", "mask", "task_id", "agent_mask"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.max_t != c.max_t or not torch.equal(a.obs.own, c.obs.own)


# --------------------------------------------------------------------------- subsets
def test_last_and_random_subsets(data_dir, recorded):
    paths = {"smac:3m": [dataset_path(data_dir, "smac:3m", "medium")]}
    arrays = recorded["smac:3m"][0]
    last = MultiTaskDataset(paths, n_episodes=5).data["smac:3m"]
    assert last.episode_index.tolist() == list(range(N_EPISODES - 5, N_EPISODES))
    rnd = MultiTaskDataset(paths, n_episodes=5, subset="random", seed=4).data["smac:3m"]
    again = MultiTaskDataset(paths, n_episodes=5, subset="random", seed=4).data["smac:3m"]
    other = MultiTaskDataset(paths, n_episodes=5, subset="random", seed=5).data["smac:3m"]
    idx = rnd.episode_index.tolist()
    assert len(set(idx)) == 5 and all(0 <= i < N_EPISODES for i in idx)
    assert idx == again.episode_index.tolist() and idx != other.episode_index.tolist()
    for td in (last, rnd):
        # stored episode k is file episode episode_index[k]: tokens and lengths agree
        src = td.episode_index.numpy()
        assert torch.equal(td.lengths, torch.from_numpy(arrays["filled"][src, :, 0].sum(1)))
        batch = td.batch(torch.arange(5))
        obs, _ = _tokens_of(arrays, "smac:3m", src, batch.max_t)
        assert torch.equal(batch.obs.enemies, obs.enemies)
    with pytest.warns(UserWarning, match="fewer"):
        big = MultiTaskDataset(paths, n_episodes=100).data["smac:3m"]
    assert big.n_episodes == N_EPISODES
    with pytest.raises(ValueError, match="subset"):
        MultiTaskDataset(paths, subset="first")


def test_mixed_quality_takes_equal_last_shares(tmp_path, recorded):
    """medium-expert from component files: n/2 last episodes of each, medium first (ODIS)."""
    arrays, wins, info = recorded["smac:3m"]
    write_random(dataset_path(tmp_path, "smac:3m", "medium"), "smac:3m",
                 arrays=(arrays, wins, info))
    half = {k: v[:8] for k, v in arrays.items()}
    write_random(dataset_path(tmp_path, "smac:3m", "expert"), "smac:3m", quality="expert",
                 arrays=(half, wins[:8], info))
    ds = MultiTaskDataset.from_dir(tmp_path, ["smac:3m"], "medium-expert", n_episodes=6)
    td = ds.data["smac:3m"]
    assert td.episode_quality == ["medium"] * 3 + ["expert"] * 3
    assert td.episode_index.tolist() == [9, 10, 11, 5, 6, 7]
    # one joined medium-expert file counts as its two halves
    joined = {k: np.concatenate([arrays[k], arrays[k][:4]]) for k in arrays}
    write_random(tmp_path / "me.h5", "smac:3m", quality="medium-expert",
                 arrays=(joined, np.concatenate([wins, wins[:4]]), info))
    td2 = MultiTaskDataset({"smac:3m": [tmp_path / "me.h5"]}, n_episodes=4).data["smac:3m"]
    assert td2.episode_index.tolist() == [6, 7, 14, 15]
    assert td2.episode_quality == ["medium"] * 2 + ["expert"] * 2


# --------------------------------------------------------------------------- validation
def test_wrong_family_or_layout_raises(tmp_path, data_dir, recorded):
    f3 = dataset_path(data_dir, "smac:3m", "medium")
    f5 = dataset_path(data_dir, "smac:5m_vs_6m", "medium")
    # a file of another task (other layout) given for 3m
    with pytest.raises(DatasetError, match="5m_vs_6m"):
        MultiTaskDataset({"smac:3m": [f3, f5]})
    # a file of another family
    mpe = tmp_path / "spread.h5"
    with copy_h5(f3, mpe) as dst:
        dst.attrs["task"], dst.attrs["family"] = "mpe:spread-3", "mpe"
    with pytest.raises(DatasetError, match="family 'mpe'"):
        MultiTaskDataset({"smac:3m": [f3, mpe]})
    # a task of another family in the mapping
    with pytest.raises(DatasetError, match="family"):
        MultiTaskDataset({"smac:3m": [f3], "mpe:spread-3": [mpe]})
    # a file whose layout attribute does not match its task
    bad = tmp_path / "bad_layout.h5"
    with copy_h5(f3, bad) as dst:
        layout = json.loads(dst.attrs["layout"])
        layout["n_agents"] = 4
        dst.attrs["layout"] = json.dumps(layout)
    with pytest.raises(DatasetError, match="n_agents"):
        MultiTaskDataset({"smac:3m": [bad]})
    # raw arrays of the wrong width under the right name
    arrays, wins, info = recorded["smac:3m"]
    cut = {k: v for k, v in arrays.items()}
    cut["obs"] = arrays["obs"][..., :-1]
    with pytest.raises(DatasetError, match="obs"):
        write_random(tmp_path / "cut.h5", "smac:3m", arrays=(cut, wins, info))
    with pytest.raises(DatasetError, match="not in this dataset"):
        MultiTaskDataset({"smac:3m": [f3]}).sample(2, task="smac:5m_vs_6m")


# --------------------------------------------------------------------------- memory, device
def test_memory_report_is_plausible(data_dir, recorded):
    ds = MultiTaskDataset.from_dir(data_dir, ["smac:3m", "smac:5m_vs_6m"], "medium")
    report = ds.memory_report()
    assert set(report) == set(ds.tasks)
    for task, nbytes in report.items():
        td = ds.data[task]
        tensor_bytes = sum(t.numel() * t.element_size()
                           for t in [*td.rows.values(), *td.static.values()])
        assert tensor_bytes <= nbytes <= 2 * tensor_bytes
        # the packed token rows: filled steps + the pad row
        steps = int(recorded[task][0]["filled"].sum()) + 1
        assert td.rows["obs.enemies"].shape[0] == steps
        assert "obs.ally_mask" in td.static  # SMAC token masks are stored once
    half = MultiTaskDataset.from_dir(data_dir, ["smac:3m"], "medium",
                                     float_dtype=torch.bfloat16)
    assert half.memory_report()["smac:3m"] < 0.6 * report["smac:3m"]
    assert half.sample(2).obs.own.dtype == torch.float32
    moved = ds.sample(2).to("cpu")
    assert moved.obs.own.device.type == "cpu"


# --------------------------------------------------------------------------- other families
@pytest.mark.parametrize("tasks", [
    ("mpe:spread-3", "mpe:spread-4"),
    ("mamujoco:Hopper-3x1", "mamujoco:Walker2d-2x3"),
], ids=["mpe", "mamujoco"])
def test_other_families_multi_task(tmp_path, tasks):
    """MPE (landmark tokens, raw state) and MuJoCo (joint tokens, continuous actions) batches
    equal their parsers on the raw arrays and pad agents, tokens, actions and state."""
    recs, sources = {}, {}
    for i, task in enumerate(tasks):
        recs[task] = record_random(task, 6, seed=i)
        sources[task] = [write_random(tmp_path / f"{i}.h5", task, arrays=recs[task])]
    ds = MultiTaskDataset(sources)
    g = torch.Generator().manual_seed(0)
    batch = ds.sample(3, generator=g)
    g = torch.Generator().manual_seed(0)
    picks = [torch.randperm(6, generator=g)[:3] for _ in tasks]
    t_max = batch.max_t
    n_agents = max(ds.data[t].n_agents for t in tasks)
    assert batch.agent_mask.shape == (6, n_agents) and batch.task_id.tolist() == [0] * 3 + [1] * 3
    for k, task in enumerate(tasks):
        arrays, _, info = recs[task]
        rows, a = slice(3 * k, 3 * k + 3), info.n_agents
        ep = picks[k].numpy()
        raw_obs = torch.from_numpy(arrays["obs"][ep, :t_max])
        assert batch.agent_mask[rows].sum(1).tolist() == [a] * 3
        state = torch.from_numpy(arrays["state"][ep, :t_max])
        assert torch.equal(batch.state[rows][..., :info.state_dim], state)
        assert (batch.state[rows][..., info.state_dim:] == 0).all()
        if task.startswith("mpe"):
            from marl.entity.mpe import parse_mpe_obs

            want = parse_mpe_obs(raw_obs, info.layout)
            assert torch.equal(batch.obs.own[rows][:, :, :a], want.own)
            assert torch.equal(batch.obs.allies[rows][:, :, :a, :a - 1], want.allies)
            assert torch.equal(batch.obs.enemies[rows][:, :, :a, :a], want.enemies)
            assert not batch.obs.enemy_mask[rows][:, :, :a, a:].any()
            assert not batch.obs.ally_mask[rows][:, :, a:].any()
            assert torch.equal(batch.actions[rows][:, :, :a],
                               torch.from_numpy(arrays["actions"][ep, :t_max, :, 0]))
            assert batch.avail_actions[rows][:, :, a:, 0].all()
            assert not batch.avail_actions[rows][:, :, a:, 1:].any()
        else:
            from marl.entity.mamujoco import parse_mujoco_obs

            want = parse_mujoco_obs(raw_obs, info.layout)
            n_tok, n_act = want.joints.shape[-2], info.n_actions
            assert batch.avail_actions is None
            filled = batch.filled[rows].bool()
            assert torch.equal(batch.obs.joints[rows][:, :, :a, :n_tok][filled],
                               want.joints[filled])
            assert torch.equal(batch.obs.joint_id[rows][:, :, :a, :n_tok], want.joint_id)
            assert (batch.obs.joint_id[rows][:, :, :a, n_tok:] == -1).all()
            assert not batch.obs.joint_mask[rows][:, :, a:].any()
            assert not batch.obs.action_mask[rows][:, :, :, n_act:].any()
            acts = torch.from_numpy(arrays["actions"][ep, :t_max])
            assert torch.equal(batch.actions[rows][:, :, :a, :n_act], acts)
            assert (batch.actions[rows][:, :, a:] == 0).all()
            assert (batch.actions[rows][..., n_act:] == 0).all()
        lengths = torch.from_numpy(arrays["filled"][ep, :, 0].sum(1))
        assert torch.equal(batch.mask[rows].sum(1), (lengths - 1).float())


ODIS_3M = (Path(__file__).resolve().parents[2] / "shared" / "data" / "odis" / "3m" / "medium"
           / "qmix_2022-04-03_12-49-45" / "part_0.h5")


@pytest.mark.skipif(not ODIS_3M.exists(), reason="the ODIS 3m sample file is not here")
def test_odis_file_loads_as_is():
    ds = MultiTaskDataset({"smac:3m": [ODIS_3M]}, n_episodes=1000)
    td = ds.data["smac:3m"]
    assert td.n_episodes == 1000 and td.episode_index.tolist() == list(range(1000, 2000))
    batch = ds.sample(32, generator=torch.Generator().manual_seed(0))
    assert batch.max_t == int(batch.filled.sum(1).max()) <= 61
    assert torch.equal(batch.mask.sum(1), batch.filled.sum(1) - 1)
    first = td.batch(torch.arange(32))
    assert torch.allclose((first.reward * first.mask).sum(1).double(), td.returns[:32], atol=1e-4)
    assert 10 < float(td.returns.mean()) < 18  # ODIS 3m medium: mean return 14.0
