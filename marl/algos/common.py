"""What every offline algorithm shares: the acting contract, transitions, token views, masks.

``Algorithm`` is the contract every algorithm implements (``loss``, ``after_update``, ``act``)
and the per-episode memory acting may need. ``transitions(batch, spec, steps_per_episode,
generator)`` picks ``K`` transitions ``t`` of every episode (uniformly among its ``L - 1``;
``K = 0``: every real transition, and no padded step) and returns them with their successors
``t + 1`` as :class:`Transitions`. None of marl's networks is recurrent: what an agent remembers
(its last action with ``agent_tokens``, its own tokens of the last ``history`` steps) is read
from the data at once, so every network runs once over ``[episodes, steps, agents]``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from marl.nets import EntityTransformer, FamilySpec, Tokens, with_agent_tokens


@dataclass
class NetConfig:
    """Sizes every algorithm's entity transformers share (HiSSD's released sizes)."""

    # What the algorithm supports (class constants, not config keys): whether it can act on a
    # family with continuous actions (MuJoCo). `marl train` refuses an unsupported pair before
    # any data is loaded.
    CONTINUOUS_ACTIONS = True

    dim: int = 64  # entity transformer width (entity_embed_dim)
    heads: int = 1
    depth: int = 1
    ffn_mult: int = 4  # transformer feed-forward width / dim
    hidden: int = 128  # MLP heads (64 -> 128 -> out)
    steps_per_episode: int = 8  # transitions drawn per sampled episode; 0 = all
    recompute: bool = False  # activation checkpointing: less memory, ~1 more forward of compute
    # what an agent remembers (the released HiSSD's inputs; marl's earlier setting: neither):
    # its binary id and last action on its tokens (nets.tokens.with_agent_tokens), and its own
    # tokens of the last `history` steps as extra tokens of the acting encoder (HiSSD: the
    # planner; BC: its encoder), a window in place of the released code's recurrent token
    agent_tokens: bool = False
    history: int = 0
    # MuJoCo: each joint token also says what the joint is on the robot (side, depth, limb end:
    # marl.entity.mamujoco); off by default, as measured in docs/hissd.md
    joint_identity: bool = False

    def obs_dims(self, spec: FamilySpec) -> tuple[int, ...]:
        """Feature sizes of the observation token groups these settings give."""
        return spec.agent_token_dims() if self.agent_tokens else spec.obs_dims

    def past_dim(self, spec: FamilySpec) -> int:
        """Feature size of a past own token: the own token and a one-hot of its age."""
        return self.obs_dims(spec)[0] + self.history

    def transformer(self, groups: tuple[int, ...]) -> EntityTransformer:
        """An entity transformer of these sizes over token groups of feature sizes ``groups``."""
        return EntityTransformer(groups, self.dim, self.heads, self.depth, self.ffn_mult,
                                 self.recompute)


@dataclass
class ValueConfig(NetConfig):
    """What the algorithms with a mixed team value and target networks share."""

    mixer_dim: int = 32  # mixer transformer width and mixing width (HiSSD: 32)
    gamma: float = 0.99
    reward_scale: float = 0.1  # SMAC returns 0..20 -> 0..2
    target_update_interval: int = 50  # updates between hard target copies


@dataclass
class Memory:
    """What acting agents remember within an episode (``agent_tokens``, ``history``)."""

    last_actions: torch.Tensor | None = None  # [..., A] ids or [..., A, n] commands
    past_own: torch.Tensor | None = None  # [..., A, h, F] own tokens of past steps, newest first
    past_valid: torch.Tensor | None = None  # [..., A, h] bool


class Algorithm(nn.Module):
    """The contract of an offline algorithm (one file each in ``marl.algos``):

    * ``__init__(spec, cfg)``, ``loss(batches, generator) -> (loss, stats)``, ``backward``
      (the loss's gradients, what training calls) and ``after_update(update)`` (targets);
    * ``act(view, avail, memory=None) -> actions``: greedy decentralised actions of every
      agent; an episode's loop calls ``memory = remember(memory, view, actions)`` after each
      step, starting from ``None`` (it stays ``None`` when nothing is remembered);
    * ``has_skills``: whether ``skills(view, memory=None)`` exists (``marl visualize``);
    * ``use_tasks(tasks)``: told the training tasks, in task-id order, before training.
    """

    name = ""
    has_skills = False

    def use_tasks(self, tasks: list[str]) -> None:
        """The training tasks in task-id order (``batch.task_id`` indexes them)."""

    def backward(self, batches, generator: torch.Generator | None = None) -> dict[str, float]:
        """``loss(batches)`` and its gradients, accumulated into ``.grad``; an algorithm may do
        it in parts (HiSSD's ``per_task_backward``)."""
        loss, stats = self.loss(batches, generator)
        loss.backward()
        return stats

    def observe(self, view, memory: Memory | None = None) -> tuple[Tokens, Tokens | None]:
        """The observation tokens of ``view`` and the history group (``None`` without
        ``history``), from what ``memory`` holds (nothing at an episode's first step)."""
        spec, cfg = self.spec, self.cfg
        obs = spec.obs_tokens(view)
        memory = memory or Memory()
        if cfg.agent_tokens:
            last = memory.last_actions
            if last is None:
                last = (torch.full(obs.masks[0].shape[:-1], -1, device=obs.masks[0].device)
                        if spec.discrete else torch.zeros(view.action_mask.shape,
                                                          device=view.action_mask.device))
            obs = with_agent_tokens(spec, obs, view, last)
        if not cfg.history:
            return obs, None
        if memory.past_own is None:
            own = obs.groups[0][..., 0, :]
            return obs, past_tokens(
                own.new_zeros(*own.shape[:-1], cfg.history, own.shape[-1]),
                torch.zeros(*own.shape[:-1], cfg.history, dtype=torch.bool, device=own.device))
        return obs, past_tokens(memory.past_own, memory.past_valid)

    def remember(self, memory: Memory | None, view, actions: torch.Tensor) -> Memory | None:
        """``memory`` after the agents took ``actions`` in ``view``."""
        cfg = self.cfg
        if not (cfg.agent_tokens or cfg.history):
            return None
        memory = memory or Memory()
        past_own = past_valid = None
        if cfg.history:
            own = self.observe(view, memory)[0].groups[0][..., 0, :]
            if memory.past_own is None:
                past_own = own.new_zeros(*own.shape[:-1], cfg.history, own.shape[-1])
                past_valid = torch.zeros(past_own.shape[:-1], dtype=torch.bool,
                                         device=own.device)
            else:
                past_own, past_valid = memory.past_own, memory.past_valid
            past_own = torch.cat([own[..., None, :], past_own[..., :-1, :]], dim=-2)
            past_valid = torch.cat([torch.ones_like(past_valid[..., :1]),
                                    past_valid[..., :-1]], dim=-1)
        return Memory(actions, past_own, past_valid)


def make_targets(module: nn.Module, names: tuple[str, ...]) -> nn.ModuleDict:
    """Frozen copies of ``module``'s submodules ``names`` (target networks)."""
    target = nn.ModuleDict({n: copy.deepcopy(getattr(module, n)) for n in names})
    target.requires_grad_(False)
    return target


def copy_targets(module: nn.Module) -> None:
    """Hard update: every target network takes its online network's parameters."""
    for name, target in module.target.items():
        target.load_state_dict(getattr(module, name).state_dict())


@torch.no_grad()
def soft_update_targets(module: nn.Module, tau: float) -> None:
    """Polyak step: every target parameter moves ``tau`` of the way to its online one."""
    for name, target in module.target.items():
        online = getattr(module, name)
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)


def take_steps(x: torch.Tensor, t: torch.Tensor, rows: torch.Tensor | None = None
               ) -> torch.Tensor:
    """``x [B, T, ...]`` at steps ``t [R, K]`` of episodes ``rows [R]`` (default: every
    episode, ``R = B``) -> ``[R, K, ...]``."""
    if rows is None:
        rows = torch.arange(x.shape[0], device=x.device)
    return x[rows[:, None], t]


def take_view_steps(x: Any, t: torch.Tensor, rows: torch.Tensor):
    """``take_steps`` of a tensor or of every field of an entity view."""
    return (take_steps(x, t, rows) if isinstance(x, torch.Tensor)
            else x.map(lambda v: take_steps(v, t, rows)))


@dataclass
class Transitions:
    view: Any  # the family's observation view at t (EntityObs, JointObs), [B, K, A, ...]
    view_next: Any
    obs: Tokens  # observation tokens at t
    obs_next: Tokens
    state: Tokens  # state tokens [agents, others] at t
    state_next: Tokens
    actions: torch.Tensor  # [B, K, A] long or [B, K, A, n_actions]
    avail: torch.Tensor | None  # [B, K, A, n_actions] bool (discrete)
    avail_next: torch.Tensor | None
    reward: torch.Tensor  # [B, K]
    terminated: torch.Tensor  # [B, K]
    returns: torch.Tensor | None  # [B, K] discounted return-to-go (raw rewards), when asked
    step_mask: torch.Tensor  # [B, K] float: 1 for real transitions
    agents: torch.Tensor  # [B, K, A] bool: real agents at real transitions
    acting: torch.Tensor  # [B, K, A] bool: agents with a choice (alive)
    task_id: torch.Tensor  # [B]
    episode: torch.Tensor  # [B] row of the batch's episode each transition row comes from
    past: Tokens | None = None  # history: own tokens of t-1..t-h, one group [B, K, A, h, F]

    @property
    def n_steps(self) -> torch.Tensor:
        return self.step_mask.sum().clamp(min=1.0)

    def step_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Masked mean of a per-transition value ``[B, K]``."""
        return (x * self.step_mask).sum() / self.n_steps

    def agent_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Masked mean of a per-agent value ``[B, K, A]`` over acting agents."""
        w = self.acting.to(x.dtype)
        return (x * w).sum() / w.sum().clamp(min=1.0)


def returns_to_go(reward: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted return-to-go ``G_t = sum_{u >= t} gamma^(u - t) r_u`` of every step of
    ``reward [B, T]`` (masked), as one matrix product with the discount table ``[T, T]``."""
    steps = torch.arange(reward.shape[1], device=reward.device)
    ahead = steps[None, :] - steps[:, None]  # [t, u] = u - t
    table = torch.where(ahead >= 0, gamma ** ahead.clamp(min=0).to(reward.dtype),
                        torch.zeros((), dtype=reward.dtype, device=reward.device))
    return (reward * mask) @ table.T


def last_actions(actions: torch.Tensor, t: torch.Tensor, rows: torch.Tensor,
                 discrete: bool) -> torch.Tensor:
    """The actions of steps ``t - 1`` ``[R, K, A(, n)]``; where ``t = 0`` there is none: -1
    (discrete) or zeros (continuous), which the agent tokens turn into zero features."""
    prev = take_steps(actions, (t - 1).clamp(min=0), rows)
    first = (t < 1)[..., None]
    if discrete:
        return prev.masked_fill(first, -1)
    return prev * ~first[..., None]


def past_tokens(own: torch.Tensor, valid: torch.Tensor) -> Tokens:
    """The history group: own tokens ``[..., h, F]`` of the last ``h`` steps (newest first)
    with a one-hot of their age appended, masked where the episode had not begun."""
    h = own.shape[-2]
    age = torch.eye(h, dtype=own.dtype, device=own.device).expand(*own.shape[:-1], h)
    return Tokens([torch.cat([own, age], dim=-1)], [valid])


def transitions(batch, spec: FamilySpec, steps_per_episode: int,
                generator: torch.Generator | None = None, gamma: float | None = None,
                cfg: NetConfig | None = None) -> Transitions:
    """``steps_per_episode`` K > 0: K transitions drawn uniformly from each episode's
    ``L - 1``, shape ``[B, K, ...]``. K = 0: every real transition of the batch and nothing
    else (padded steps are never computed), shape ``[N, 1, ...]`` for N transitions. With
    ``gamma``, each transition also carries its discounted return-to-go (the data are whole
    episodes, so it is the Monte-Carlo return of the behaviour policy). ``cfg``'s
    ``agent_tokens`` and ``history`` add what the agents remember, read from the episode."""
    device = batch.reward.device
    if steps_per_episode:
        rows = torch.arange(batch.batch_size, device=device)
        n_trans = batch.mask.sum(1).long().clamp(min=1)  # L - 1 transitions per episode
        u = torch.rand(batch.batch_size, steps_per_episode, generator=generator)
        t = (u.to(device) * n_trans[:, None]).long()
    else:
        rows, steps = torch.nonzero(batch.mask > 0, as_tuple=True)
        t = steps[:, None]
    t_next = (t + 1).clamp(max=batch.max_t - 1)
    step_mask = take_steps(batch.mask, t, rows)
    view, view_next = take_view_steps(batch.obs, t, rows), take_view_steps(batch.obs, t_next, rows)
    agents = batch.agent_mask[rows][:, None, :] & (step_mask[..., None] > 0)
    avail = avail_next = None
    acting = agents
    if spec.discrete:
        avail = take_steps(batch.avail_actions, t, rows)
        avail_next = take_steps(batch.avail_actions, t_next, rows)
        acting = agents & avail[..., 1:].any(-1)  # a dead agent has only no-op
    obs, obs_next = spec.obs_tokens(view), spec.obs_tokens(view_next)
    actions = take_steps(batch.actions, t, rows)
    agent_tokens, history = (cfg.agent_tokens, cfg.history) if cfg is not None else (False, 0)
    if agent_tokens:
        obs = with_agent_tokens(spec, obs, view,
                                last_actions(batch.actions, t, rows, spec.discrete))
        obs_next = with_agent_tokens(spec, obs_next, view_next, actions)
    past = None
    if history:
        own = []
        for back in range(1, history + 1):  # a few steps, each batched over everything
            t_back = (t - back).clamp(min=0)
            view_back = take_view_steps(batch.obs, t_back, rows)
            tokens = spec.obs_tokens(view_back)
            if agent_tokens:
                tokens = with_agent_tokens(spec, tokens, view_back, last_actions(
                    batch.actions, t_back, rows, spec.discrete))
            own.append(tokens.groups[0][..., 0, :])
        began = t[..., None] - torch.arange(1, history + 1, device=device) >= 0  # [R, K, h]
        began = began[..., None, :].expand(*agents.shape, history)
        # before the episode began there is nothing: zeros, as when acting (and masked)
        past = past_tokens(torch.stack(own, dim=-2) * began[..., None], began)
    return Transitions(
        view=view, view_next=view_next, obs=obs, obs_next=obs_next, past=past,
        state=spec.state_tokens(take_view_steps(batch.state, t, rows), view),
        state_next=spec.state_tokens(take_view_steps(batch.state, t_next, rows), view_next),
        actions=actions, avail=avail, avail_next=avail_next,
        reward=take_steps(batch.reward, t, rows),
        terminated=take_steps(batch.terminated, t, rows),
        returns=(None if gamma is None
                 else take_steps(returns_to_go(batch.reward, batch.mask, gamma), t, rows)),
        step_mask=step_mask, agents=agents, acting=acting, task_id=batch.task_id[rows],
        episode=rows)


def masked_logits(logits: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~avail, float("-inf"))


def action_nll(spec: FamilySpec, out: torch.Tensor, tr: Transitions,
               log_std: torch.Tensor | None = None) -> torch.Tensor:
    """Per-agent negative log-likelihood ``[B, K, A]`` of the dataset actions: a softmax over
    available actions (discrete) or a Gaussian with the head's log-std (continuous)."""
    if spec.discrete:
        logp = F.log_softmax(masked_logits(out, tr.avail), -1)
        return -logp.gather(-1, tr.actions[..., None])[..., 0]
    dist = torch.distributions.Normal(out, log_std.exp())
    return -(dist.log_prob(tr.actions) * tr.view.action_mask).sum(-1)


def greedy(spec: FamilySpec, out: torch.Tensor, avail: torch.Tensor | None) -> torch.Tensor:
    """Greedy actions from logits/Q-values (discrete, available only) or means (continuous)."""
    return masked_logits(out, avail).argmax(-1) if spec.discrete else out


def changed_actions(spec: FamilySpec, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Whether each agent's greedy action differs between ``a`` and ``b`` ``[..., A]``:
    another action id (discrete), or a joint command moved by more than 0.05 of its [-1, 1]
    range (continuous)."""
    return a != b if spec.discrete else (a - b).abs().amax(-1) > 0.05


def mean_terms(per_batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each term averaged over the update's batches (tasks count equally)."""
    keys = per_batch[0].keys()
    return {k: torch.stack([b[k] for b in per_batch]).mean() for k in keys}
