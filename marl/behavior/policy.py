"""Behaviour policies: their config, networks, action sampling, snapshots and run checkpoints.

The networks are small entity networks, so one policy acts on any team size of its family:

* actor: each token kind gets its own MLP embedding; allies and enemies are pooled (masked mean
  and max) into a context with the own token; the context gives the own-action logits (SMAC: no-op,
  stop, 4 moves; MPE: 5 moves) and, for SMAC, each enemy token concatenated with the context gives
  its attack logit. Unavailable actions are masked.
* MuJoCo actor: joint tokens and the root vector are embedded and pooled into a context; each
  controlled-joint token with the context gives the mean of a Gaussian for its joint (one
  learned log-std per policy), so any partition of a robot maps onto the same network.
* critic: one value V(s) per battle from the pooled state tokens (team reward, so one value
  serves every agent: N times less critic work than per-agent values).

Both trainers (``marl.behavior.torch_ppo``, ``marl.behavior.jax_ppo``) stand on this module;
snapshots are safetensors with a JSON record of their measured results.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import envs
from envs.core import EnvError
from marl.behavior.config import ENGINES, BehaviorConfig
from marl.checkpoint import load as load_checkpoint
from marl.entity import EntityObs


# ---------------------------------------------------------------------------- entity networks
def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out), nn.ReLU())


def _pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean and max over the token axis (-2): [..., n, d] -> [..., 2d]; zeros if empty."""
    m = mask[..., None].to(x.dtype)
    count = m.sum(-2).clamp(min=1.0)
    mean = (x * m).sum(-2) / count
    big = torch.finfo(x.dtype).max
    maxed = x.masked_fill(m == 0, -big).amax(-2) if x.shape[-2] else mean
    maxed = torch.where(m.sum(-2) > 0, maxed, torch.zeros_like(maxed))
    return torch.cat([mean, maxed], dim=-1)


class EntityActor(nn.Module):
    """Logits ``[..., n_own_actions + n_enemies * entity_actions]`` from an EntityObs."""

    def __init__(self, f_own: int, f_ally: int, f_enemy: int, n_own_actions: int,
                 entity_actions: bool, hidden: int, recurrent: bool = False):
        super().__init__()
        # recurrent: a GRU cell on the context (the jax engine's --recurrent); such an actor
        # acts with its state through the compiled recorder (marl.behavior_jax), not act()
        self.gru = nn.GRUCell(hidden, hidden) if recurrent else None
        self.own, self.ally, self.enemy = _mlp(f_own, hidden, hidden), _mlp(f_ally, hidden, hidden), \
            _mlp(f_enemy, hidden, hidden)
        self.body = _mlp(5 * hidden, hidden, hidden)
        self.own_head = nn.Linear(hidden, n_own_actions)
        self.entity_actions = entity_actions
        if entity_actions:
            self.target_head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        for head in [self.own_head] + ([self.target_head[-1]] if entity_actions else []):
            nn.init.orthogonal_(head.weight, 0.01)  # near-uniform first policy
            nn.init.zeros_(head.bias)

    def forward(self, view: EntityObs, h: torch.Tensor | None = None):
        """Logits; a recurrent actor takes its state ``h [..., hidden]`` and returns (logits, h)."""
        enemy = self.enemy(view.enemies)
        context = self.body(torch.cat([self.own(view.own), _pool(self.ally(view.allies), view.ally_mask),
                                       _pool(enemy, view.enemy_mask)], dim=-1))
        if self.gru is not None:
            if h is None:
                raise EnvError("a recurrent behaviour policy needs its state: it acts through "
                               "the compiled recorder (SMAC on SMAX), not act()")
            context = self.gru(context.reshape(-1, context.shape[-1]),
                               h.reshape(-1, h.shape[-1])).reshape(context.shape)
        logits = self.own_head(context)
        if self.entity_actions:
            pair = torch.cat([enemy, context[..., None, :].expand_as(enemy)], dim=-1)
            logits = torch.cat([logits, self.target_head(pair)[..., 0]], dim=-1)
        return logits if self.gru is None else (logits, context)


class JointActor(nn.Module):
    """Per-joint Gaussian means ``[..., n_agents, n_actions]`` from MuJoCo joint tokens."""

    def __init__(self, f_joint: int, f_root: int, hidden: int):
        super().__init__()
        self.joint, self.root = _mlp(f_joint, hidden, hidden), _mlp(f_root, hidden, hidden)
        self.body = _mlp(3 * hidden, hidden, hidden)
        self.mean = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.orthogonal_(self.mean[-1].weight, 0.01)
        nn.init.zeros_(self.mean[-1].bias)
        self.log_std = nn.Parameter(torch.full((), -0.5))

    def forward(self, view) -> torch.Tensor:
        from marl.entity.mamujoco import tokens_to_actions

        joints = self.joint(view.joints)
        context = self.body(torch.cat([self.root(view.root), _pool(joints, view.joint_mask)], -1))
        pair = torch.cat([joints, context[..., None, :].expand_as(joints)], dim=-1)
        return tokens_to_actions(self.mean(pair)[..., 0], view)


class EntityCritic(nn.Module):
    """V(s) from two kinds of state tokens (SMAC: allies, enemies; MPE: agents, landmarks)."""

    def __init__(self, f_a: int, f_b: int, hidden: int):
        super().__init__()
        self.a, self.b = _mlp(f_a, hidden, hidden), _mlp(f_b, hidden, hidden)
        self.head = nn.Sequential(nn.Linear(4 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, a, a_mask, b, b_mask) -> torch.Tensor:
        pooled = torch.cat([_pool(self.a(a), a_mask), _pool(self.b(b), b_mask)], dim=-1)
        return self.head(pooled)[..., 0]


# ---------------------------------------------------------------------------- family adapters
class _Smac:
    def __init__(self, info):
        from marl.entity import smac as ent

        self.layout, self.ent = info.layout, ent
        self.n_own_actions, self.entity_actions = 6, True
        self.dims = (ent.F_OWN, ent.F_ENTITY, ent.F_ENTITY, ent.F_STATE, ent.F_STATE)

    def obs(self, obs: torch.Tensor) -> EntityObs:
        return self.ent.parse_smac_obs(obs, self.layout)

    def critic_tokens(self, state: torch.Tensor, obs: torch.Tensor):
        s = self.ent.parse_smac_state(state, self.layout)
        return s.allies, s.ally_mask, s.enemies, s.enemy_mask


class _Mpe:
    def __init__(self, info):
        from marl.entity import mpe as ent

        self.layout, self.ent = info.layout, ent
        self.n_own_actions, self.entity_actions = 5, False
        self.dims = (ent.OWN_DIM, ent.ENTITY_DIM, ent.ENTITY_DIM, ent.OWN_DIM, ent.ENTITY_DIM)

    def obs(self, obs: torch.Tensor) -> EntityObs:
        return self.ent.parse_mpe_obs(obs, self.layout)

    def critic_tokens(self, state: torch.Tensor, obs: torch.Tensor):
        view = self.obs(obs)  # every agent's own token; landmarks made absolute from agent 0
        landmarks = view.enemies[..., 0, :, :].clone()
        landmarks[..., :2] += view.own[..., 0, None, 2:4]
        mask = torch.ones(landmarks.shape[:-1], dtype=torch.bool)
        return view.own, torch.ones(view.own.shape[:-1], dtype=torch.bool), landmarks, mask


class _Grid:
    def __init__(self, info):
        from marl.entity import grid as ent

        self.layout, self.ent = info.layout, ent
        self.n_own_actions, self.entity_actions = 5, False
        self.dims = (ent.OWN_DIM, ent.ENTITY_DIM, ent.ENTITY_DIM, ent.OWN_DIM, ent.OWN_DIM)

    def obs(self, obs: torch.Tensor) -> EntityObs:
        return self.ent.parse_grid_obs(obs, self.layout)

    def critic_tokens(self, state: torch.Tensor, obs: torch.Tensor):
        tokens = self.ent.SPEC.state_tokens(state, self.obs(obs))  # agents, landmarks
        (agents, landmarks), (agent_mask, landmark_mask) = tokens.groups, tokens.masks
        return agents, agent_mask, landmarks, landmark_mask


class _Mujoco:
    def __init__(self, info):
        from marl.entity import mamujoco as ent

        self.layout, self.ent = info.layout, ent
        self.dims = (ent.JOINT_DIM, ent.ROOT_DIM, None, ent.JOINT_DIM, ent.ROOT_DIM)

    def obs(self, obs: torch.Tensor):
        return self.ent.parse_mujoco_obs(obs, self.layout)

    def critic_tokens(self, state: torch.Tensor, obs: torch.Tensor):
        view = self.obs(obs)  # every agent's joint tokens and root vectors
        joints = view.joints.flatten(-3, -2)
        return joints, view.joint_mask.flatten(-2), view.root, torch.ones(view.root.shape[:-1], dtype=torch.bool)


ADAPTERS = {"smac": _Smac, "mpe": _Mpe, "grid": _Grid, "mamujoco": _Mujoco}  # family -> how a behaviour policy sees it


def family_adapter(info):
    if info.family not in ADAPTERS:
        raise EnvError(f"behaviour policies are trained for families {sorted(ADAPTERS)}, "
                       f"not {info.family!r} ({info.task})")
    return ADAPTERS[info.family](info)


def make_actor(info, hidden: int, recurrent: bool = False) -> nn.Module:
    fam = family_adapter(info)
    if info.action_type == "continuous":
        return JointActor(fam.dims[0], fam.dims[1], hidden)
    f_own, f_ally, f_enemy, _, _ = fam.dims
    return EntityActor(f_own, f_ally, f_enemy, fam.n_own_actions, fam.entity_actions, hidden, recurrent)


class Categorical:
    """Per-agent discrete actions from logits with unavailable actions masked."""

    def __init__(self, logits: torch.Tensor, avail: torch.Tensor):
        self.logp = F.log_softmax(logits.masked_fill(~avail, torch.finfo(logits.dtype).min), -1)

    def sample(self, generator=None) -> torch.Tensor:
        probs = self.logp.exp().reshape(-1, self.logp.shape[-1])
        return torch.multinomial(probs, 1, generator=generator).reshape(self.logp.shape[:-1])

    def mode(self) -> torch.Tensor:
        return self.logp.argmax(-1)

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return self.logp.gather(-1, actions[..., None])[..., 0]

    def entropy(self) -> torch.Tensor:
        return -(self.logp.exp() * self.logp.clamp(min=-1e8)).sum(-1)


class Gaussian:
    """Per-agent continuous actions: independent Gaussians over the agent's real action entries
    (``mask``); log-probabilities and entropies are summed over them."""

    def __init__(self, mean: torch.Tensor, log_std: torch.Tensor, mask: torch.Tensor):
        self.dist = torch.distributions.Normal(mean, log_std.exp().expand_as(mean))
        self.mask = mask.to(mean.dtype)

    def sample(self, generator=None) -> torch.Tensor:
        noise = torch.randn(self.dist.loc.shape, generator=generator)
        return (self.dist.loc + self.dist.scale * noise) * self.mask

    def mode(self) -> torch.Tensor:
        return self.dist.loc * self.mask

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        return (self.dist.log_prob(actions) * self.mask).sum(-1)

    def entropy(self) -> torch.Tensor:
        return (self.dist.entropy() * self.mask).sum(-1)


def policy(actor: nn.Module, fam, obs: torch.Tensor, avail: torch.Tensor | None):
    """The action distribution of every agent for observations ``[..., n_agents, obs_dim]``."""
    view = fam.obs(obs)
    if isinstance(actor, JointActor):
        return Gaussian(actor(view), actor.log_std, view.action_mask)
    return Categorical(actor(view), avail)


@torch.no_grad()
def act(actor: nn.Module, fam, obs: np.ndarray, avail: np.ndarray | None, greedy: bool,
        generator: torch.Generator | None = None, epsilon: float = 0.0):
    """Actions (numpy, what ``env.step`` takes) and their log-probabilities per agent.
    ``epsilon`` > 0 (with ``greedy``): each agent takes a uniformly random available action
    (continuous: uniform in [-1, 1]) with that probability."""
    dist = policy(actor, fam, torch.from_numpy(obs), None if avail is None else torch.from_numpy(avail))
    actions = dist.mode() if greedy else dist.sample(generator)
    if epsilon > 0:
        coin = torch.rand(actions.shape[:2], generator=generator) < epsilon
        if isinstance(dist, Categorical):
            uniform = Categorical(torch.zeros(dist.logp.shape), torch.from_numpy(avail)).sample(generator)
        else:
            uniform = (torch.rand(actions.shape, generator=generator) * 2 - 1) * dist.mask
        actions = torch.where(coin.reshape(coin.shape + (1,) * (actions.dim() - 2)), uniform, actions)
    return actions.numpy(), dist.log_prob(actions)


def evaluate(actor: nn.Module, task: str, episodes: int, greedy: bool, seed: int,
             num_envs: int = 64, env_options: dict | None = None) -> dict:
    """Win rate (where the task reports wins), return and length of ``episodes`` fresh episodes, played in rounds of
    ``num_envs`` copies that each count their first episode (``envs.play``)."""
    env = envs.make(task, num_envs=min(num_envs, episodes), seed=seed, **(env_options or {}))
    fam = family_adapter(env.info)
    gen = torch.Generator().manual_seed(seed)
    returns, lengths, wins = [], [], []
    try:
        for start in range(0, episodes, env.num_envs):
            keep = min(env.num_envs, episodes - start)
            outcomes = envs.play(env, lambda ts: act(actor, fam, ts.obs, ts.avail_actions,
                                                     greedy, gen)[0], seed + start)
            returns += outcomes.returns[:keep].tolist()
            lengths += outcomes.lengths[:keep].tolist()
            if outcomes.wins is not None:
                wins += outcomes.wins[:keep].tolist()
    finally:
        env.close()
    out = {"return": float(np.mean(returns)), "length": float(np.mean(lengths)),
           "episodes": episodes}
    if wins:
        out["win_rate"] = float(np.mean(wins))
    return out


# ---------------------------------------------------------------------------- training
def learning_rate(cfg: BehaviorConfig, env_steps: int) -> float:
    """The Adam step size for the update that starts at ``env_steps``.

    Annealing follows the schedule of the whole run, so a run resumed with a larger
    ``total_env_steps`` and ``anneal_lr`` continues at the rate its remaining share gives:
    a fine-tuning phase for a policy that plateaued at the constant rate."""
    if not cfg.anneal_lr:
        return cfg.lr
    return cfg.lr * max(0.0, 1.0 - env_steps / cfg.total_env_steps)


def save_snapshot(weights: dict[str, torch.Tensor], path: Path, metadata: dict) -> None:
    """Actor weights (a state_dict) as safetensors (no pickle) plus a JSON provenance record,
    both atomic."""
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp),
              metadata={"marl": json.dumps(metadata)})
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    meta_tmp = meta.with_name(meta.name + ".tmp")
    meta_tmp.write_text(json.dumps(metadata, indent=2))
    os.replace(meta_tmp, meta)


def load_policy(path: str | Path, info) -> nn.Module:
    """A snapshot as an actor for ``info``'s task (any task of the family it was trained on)."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})["marl"])
        weights = load_file(str(path))
        trained_on = meta["config"]["task"]
        hidden = meta["config"]["hidden"]
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
        raise EnvError(f"{path} is not a marl behaviour policy (a safetensors file with its "
                       f"'marl' metadata): {exc}") from None
    family = trained_on.split(":")[0]
    if family != info.family:
        raise EnvError(f"{path} is a policy for {trained_on} (family {family}); it cannot act on "
                       f"{info.task} (family {info.family})")
    if family == "mamujoco":  # joint tokens fit every robot, but a gait is one robot's
        from envs.mamujoco import parse_map as parse_mujoco_map

        robot = parse_mujoco_map(trained_on.split(":")[1]).robot
        if robot != info.layout.robot:
            raise EnvError(f"{path} is a policy for {trained_on} (robot {robot}); it cannot drive "
                           f"{info.task} (robot {info.layout.robot}, partition "
                           f"{info.layout.partition}): use a policy trained on {info.layout.robot}")
    actor = make_actor(info, hidden, bool(meta["config"].get("recurrent", False)))
    try:
        actor.load_state_dict(weights)
    except RuntimeError as exc:
        raise EnvError(f"{path}: its weights do not fit the {info.family} actor of width "
                       f"{hidden}: {str(exc).splitlines()[0]}") from None
    actor.trained_on, actor.trained_options = trained_on, meta.get("env_options") or {}
    return actor.eval()


def partition_bridge(actor: nn.Module, info):
    """(bridge, family adapter of the policy's own partition) where ``actor`` (from
    ``load_policy``) was trained on another partition of ``info``'s robot; else None. The
    policy then acts for its own partition's agents, from the state (``envs.mamujoco.
    PartitionBridge``)."""
    if info.family != "mamujoco" or actor.trained_on == info.task:
        return None
    from envs.mamujoco import PartitionBridge

    source = envs.make(actor.trained_on, num_envs=1, **actor.trained_options)
    source.close()
    return PartitionBridge(source.info.layout, info.layout), family_adapter(source.info)


def read_checkpoint(path: Path, cfg: BehaviorConfig, same: tuple[str, ...] = ()) -> dict | None:
    """A run's checkpoint to resume from (None if there is none yet), refused with the setting
    named if it was made for another task, width or any of the ``same`` settings."""
    if not path.exists():
        return None
    ckpt = load_checkpoint(path)
    saved = ckpt.get("config", {})
    if saved.get("task") != cfg.task:
        raise EnvError(f"{path} is a run for {saved.get('task')}, not {cfg.task}")
    if saved.get("hidden") != cfg.hidden:
        raise EnvError(f"{path} has networks of width {saved.get('hidden')}, not {cfg.hidden}: "
                       f"resume it with --hidden {saved.get('hidden')}")
    for key in same:
        if saved.get(key) != getattr(cfg, key):
            raise EnvError(f"{path} is a run with {key}={saved.get(key)!r}, not "
                           f"{getattr(cfg, key)!r}: resume it with the settings it was started with")
    return ckpt


def resolve_engine(cfg: BehaviorConfig, out: Path) -> BehaviorConfig:
    """``cfg`` with ``engine`` decided: a resumed run keeps the engine it was started with."""
    from dataclasses import replace

    if cfg.engine not in ENGINES:
        raise EnvError(f"behavior: engine={cfg.engine!r}; accepted: {ENGINES}")
    engine = cfg.engine
    if engine == "auto":
        saved = out / "config.json"
        if (out / "checkpoint.pt").exists() and saved.exists():
            engine = json.loads(saved.read_text()).get("engine", "torch")
        else:
            family, _ = envs.split_task(cfg.task)
            engine = "jax" if family.name == "smac" else "torch"  # behaviour runs use SMAX
    if engine == "torch" and cfg.recurrent:
        raise EnvError("behavior: --recurrent needs --engine jax (SMAC on SMAX)")
    if engine == "torch" and cfg.record_replay:
        raise EnvError("behavior: --record-replay needs --engine jax (SMAC on SMAX)")
    if engine == "torch" and cfg.algo != "mappo":
        raise EnvError(f"behavior: algo={cfg.algo!r} needs --engine jax (SMAC on SMAX); "
                       "the torch trainer has mappo only")
    return replace(cfg, engine=engine)
