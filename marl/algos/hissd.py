"""HiSSD: Hierarchical and Separate Skill Discovery (Liu et al., ICLR 2025), on the entity view.

Reads top to bottom: config, networks, acting (decentralised: each agent's own observation),
then the losses of one update. Deviations from the released code, and why, are in
``docs/hissd.md``.

Networks (each an entity transformer over one agent's observation tokens, ``marl.nets``):

* **planner** -> **common skills**: one skill token per observation token (own, allies,
  enemies), shared team knowledge. Trained by the decoder's action loss and by **forward
  prediction**: a predictor that sees the global state tokens at t and every agent's common
  skill predicts the state tokens at t+1. The prediction loss of each transition is weighted by
  ``exp(td_weight * A_t)`` (clipped, normalised to mean 1 over the batch), where ``A_t`` is the
  offline advantage of the transition under the mixed value below: transitions that did better
  than expected shape the common skills more.
* **task-specific skill encoder** -> ``z_i``: trained by an InfoNCE loss in which samples of
  the same task are positives and samples of the other tasks are the negatives.
* **decoder**: observation tokens, each with its common-skill token concatenated; each output
  token concatenated with ``z_i`` feeds the action head (SMAC: 6 own logits + one attack logit per enemy token;
  MuJoCo: one Gaussian mean per joint token). Trained by behaviour cloning (masked NLL).
* **value** ``V_i(o_i)`` per agent, mixed by the **transformer mixer** into ``V_tot(s)``;
  trained by a per-sample, masked expectile loss (IQL's sign) towards
  ``r_t + gamma (1 - term_t) V̄_tot(t+1)`` from target networks (hard copies every
  ``target_update_interval`` updates).

Nothing is recurrent, so every loss runs on all sampled timesteps at once: an update draws
``steps_per_episode`` transitions from each sampled episode (0: every transition) and runs
each network once over ``[episodes, steps, agents]``.

Ablations are switches: ``common_skills``, ``task_skills``, ``advantage_weighting``,
``contrastive``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from marl.algos.common import (ValueConfig, action_nll, copy_targets, greedy, make_targets,
                               transitions)
from marl.nets import ActionHead, FamilySpec, Tokens, TransformerMixer, mlp


@dataclass
class HissdConfig(ValueConfig):
    skill_dim: int = 64  # common-skill tokens and task-specific skills
    expectile: float = 0.9  # tau of the expectile value loss (IQL)
    td_weight: float = 3.0  # temperature of the advantage weight exp(td_weight * A)
    weight_clip: float = 100.0  # upper clip of the advantage weight (HiSSD: 100)
    contrastive_coef: float = 0.05  # HiSSD's beta
    contrastive_samples: int = 64  # anchors per task per update
    prediction_coef: float = 1.0
    value_coef: float = 1.0
    common_skills: bool = True  # ablation: no planner, no forward prediction
    task_skills: bool = True  # ablation: no task-specific skill z
    advantage_weighting: bool = True  # ablation: unweighted forward prediction, no value net
    contrastive: bool = True  # ablation: z without the InfoNCE term
    # memory: back-propagate one task's graph at a time (same gradients; ``backward``)
    per_task_backward: bool = False


class HiSSD(nn.Module):
    name = "hissd"
    has_skills = True

    def __init__(self, spec: FamilySpec, cfg: HissdConfig):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        d, h, k = cfg.dim, cfg.hidden, cfg.skill_dim
        obs_dims = spec.obs_dims
        if cfg.common_skills:
            self.planner = cfg.transformer(obs_dims)
            self.common_head = mlp(d, h, k, nn.Tanh())
            # forward model: state tokens at t (agent tokens carry the agent's own common skill)
            a_dim, o_dim = spec.state_dims
            self.predictor = cfg.transformer((a_dim + k, o_dim))
            self.predict_agents, self.predict_others = nn.Linear(d, a_dim), nn.Linear(d, o_dim)
        if cfg.task_skills:
            self.task_encoder = cfg.transformer(obs_dims)
            self.task_head = mlp(d, h, k, nn.Tanh())
            if cfg.contrastive:
                self.contrast_head = mlp(d, h, k)
                # bilinear similarity of unit vectors (CURL), started at cosine / 0.1
                self.contrast_w = nn.Parameter(torch.eye(k) * 10.0)
        # each observation token carries its own common-skill token (same information as
        # HiSSD's extra skill tokens, half the sequence length)
        self.decoder = cfg.transformer(tuple(f + (k if cfg.common_skills else 0)
                                             for f in obs_dims))
        self.action_head = ActionHead(spec, d + (k if cfg.task_skills else 0), h)
        if cfg.advantage_weighting and cfg.common_skills:  # the value only serves the weights
            self.value = cfg.transformer(obs_dims)
            self.value_head = mlp(d, h, 1)
            self.mixer = TransformerMixer(spec.state_dims, cfg.mixer_dim, cfg.mixer_dim)
            self.target = make_targets(self, ("value", "value_head", "mixer"))

    # ------------------------------------------------------------------ skills and actions
    def common_skill_tokens(self, obs: Tokens) -> list[torch.Tensor]:
        """Common skills: one token per observation token, per group ``[..., n_g, skill]``."""
        return [self.common_head(x) for x in self.planner(obs.groups, obs.masks)]

    def task_encoding(self, obs: Tokens) -> torch.Tensor:
        """The task encoder's own-token output ``[..., dim]``."""
        return self.task_encoder(obs.groups, obs.masks, outputs=(0,))[0][..., 0, :]

    def logits(self, obs: Tokens, view, common: list[torch.Tensor] | None = None,
               task_enc: torch.Tensor | None = None) -> torch.Tensor:
        """Action logits (discrete) or means (continuous) of every agent from its own tokens."""
        groups = list(obs.groups)
        if self.cfg.common_skills:
            common = self.common_skill_tokens(obs) if common is None else common
            groups = [torch.cat([x, c], dim=-1) for x, c in zip(groups, common)]
        own, ent = self.decoder.own_and_entities(groups, obs.masks, self.spec.entity_group)
        if self.cfg.task_skills:
            z = self.task_head(self.task_encoding(obs) if task_enc is None else task_enc)
            own = torch.cat([own, z], dim=-1)
            if ent is not None:
                ent = torch.cat([ent, z[..., None, :].expand(*ent.shape[:-1], z.shape[-1])], -1)
        return self.action_head(own, ent, view)

    @torch.no_grad()
    def act(self, view, avail: torch.Tensor | None) -> torch.Tensor:
        """Greedy decentralised actions of every agent: argmax over available actions
        (discrete) or the Gaussian means (continuous)."""
        return greedy(self.spec, self.logits(self.spec.obs_tokens(view), view), avail)

    @torch.no_grad()
    def skills(self, view) -> dict[str, torch.Tensor]:
        """Each agent's common skill (its own token's) and task-specific skill ``z``; for
        continuous families also the common skill of every joint token (``joint_common``
        ``[..., J, k]``, with ``joint_mask``)."""
        obs = self.spec.obs_tokens(view)
        out = {}
        if self.cfg.common_skills:
            tokens = self.common_skill_tokens(obs)
            out["common"] = tokens[0][..., 0, :]
            if not self.spec.discrete:
                out["joint_common"] = tokens[self.spec.entity_group]
                out["joint_mask"] = obs.masks[self.spec.entity_group]
        if self.cfg.task_skills:
            out["task"] = self.task_head(self.task_encoding(obs))
        return out

    # ------------------------------------------------------------------ one update's losses
    def _team_value(self, nets: dict, obs: Tokens, state: Tokens) -> torch.Tensor:
        own = nets["value"](obs.groups, obs.masks, outputs=(0,))[0][..., 0, :]
        v = nets["value_head"](own)[..., 0]
        return nets["mixer"](v * state.masks[0].to(v.dtype), state)

    def loss(self, batches, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one update on ``batches``: one ``EntityBatch`` per task (unpadded, the
        cheap way) or padded multi-task batches. Every term is the mean of its per-batch
        masked means, so tasks count equally whatever their team size; the contrastive term
        pairs samples across all batches."""
        if not isinstance(batches, (list, tuple)):
            batches = [batches]
        terms: dict[str, list[torch.Tensor]] = {}
        pairs = []
        for batch in batches:
            tr, pair_index = self._sample(batch, generator)
            batch_terms, task_enc = self._batch_losses(tr)
            for k, v in batch_terms.items():
                terms.setdefault(k, []).append(v)
            pairs += [(_rows(task_enc, a), _rows(task_enc, b), task) for a, b, task in pair_index]
        stats = {k: torch.stack(v).mean() for k, v in terms.items()}  # tasks count equally
        total = self._weighted_sum(stats)
        stats.pop("prediction_weighted", None)  # in the loss; "prediction" is reported
        if self.cfg.task_skills and self.cfg.contrastive:
            stats["contrastive"] = self._info_nce(pairs)
            total = total + self.cfg.contrastive_coef * stats["contrastive"]
        stats["loss"] = total
        return total, {k: float(v.detach()) for k, v in stats.items()}

    def backward(self, batches, generator: torch.Generator | None = None) -> dict[str, float]:
        """``loss(batches)`` and its gradients (accumulated into ``.grad``). With
        ``per_task_backward``, one task's graph is held at a time: the InfoNCE term couples the
        tasks only through the sampled pairs' encodings, so, as in gradient caching, those few
        encodings are computed first without a graph, the InfoNCE gradient with respect to them
        is taken, and each task's backward pass then injects it into its own graph. Same random
        draws, loss and gradients as ``loss(...).backward()`` (up to float rounding)."""
        if not isinstance(batches, (list, tuple)):
            batches = [batches]
        if not self.cfg.per_task_backward:
            loss, stats = self.loss(batches, generator)
            loss.backward()
            return stats
        cfg = self.cfg
        if generator is None:  # the draws are replayed below, so they need their own stream
            generator = torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        # pass 1: every task's draws (only the generator state before them is kept) and the
        # encodings of its contrastive pairs, without a graph
        starts, leaves = [], []
        for batch in batches:
            starts.append(generator.get_state())
            tr, pair_index = self._sample(batch, generator)
            with torch.no_grad():
                leaves += [(self.task_encoding(_gather_obs(tr.obs, a)).requires_grad_(),
                            self.task_encoding(_gather_obs(tr.obs, b)).requires_grad_(), task)
                           for a, b, task in pair_index]
            del tr
        stats: dict[str, float] = {}
        if cfg.task_skills and cfg.contrastive:
            nce = self._info_nce(leaves)
            (cfg.contrastive_coef * nce).backward()
            stats["contrastive"] = float(nce.detach())
        pair_grads = [(a.grad, b.grad) for a, b, _ in leaves]
        # pass 2: per task, the same draws again, its losses and its share of the InfoNCE
        # gradient, back-propagated before the next task's graph is built
        terms: dict[str, list[float]] = {}
        for batch, start in zip(batches, starts):
            tr, pair_index = self._sample(batch, torch.Generator().set_state(start))
            batch_terms, task_enc = self._batch_losses(tr)
            surrogate = self._weighted_sum(batch_terms) / len(batches)
            for a, b, _ in pair_index:
                ga, gb = pair_grads.pop(0)
                if ga is not None:  # None: a single task, no negatives, no gradient
                    surrogate = surrogate + (_rows(task_enc, a) * ga).sum() + (_rows(task_enc, b) * gb).sum()
            surrogate.backward()
            for k, v in batch_terms.items():
                terms.setdefault(k, []).append(float(v.detach()))
            del tr, batch_terms, task_enc, surrogate
        stats.update({k: sum(v) / len(v) for k, v in terms.items()})
        stats["loss"] = self._weighted_sum(stats) + cfg.contrastive_coef * stats.get("contrastive", 0.0)
        stats.pop("prediction_weighted", None)
        return {k: float(v) for k, v in stats.items()}

    def _weighted_sum(self, terms: dict):
        """The loss terms other than the contrastive one, weighted (tensors or floats)."""
        cfg = self.cfg
        total = terms["bc"]
        if "prediction_weighted" in terms:
            total = total + cfg.prediction_coef * terms["prediction_weighted"]
        if "value" in terms:
            total = total + cfg.value_coef * terms["value"]
        return total

    def _sample(self, batch, generator):
        """The random draws of one batch: its transitions, then its contrastive pairs."""
        tr = transitions(batch, self.spec, self.cfg.steps_per_episode, generator)
        pairs = []
        if self.cfg.task_skills and self.cfg.contrastive:
            pairs = self._contrastive_pairs(tr.acting, tr.task_id, generator)
        return tr, pairs

    def _batch_losses(self, tr) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The loss terms of one batch's transitions, and its task encodings (for the pairs)."""
        cfg, spec = self.cfg, self.spec
        obs, state, step_mask, n_steps = tr.obs, tr.state, tr.step_mask, tr.n_steps
        terms: dict[str, torch.Tensor] = {}

        # -- skills
        common = self.common_skill_tokens(obs) if cfg.common_skills else None
        task_enc = self.task_encoding(obs) if cfg.task_skills else None

        # -- low level: behaviour cloning through both skills
        out = self.logits(obs, tr.view, common, task_enc)
        terms["bc"] = tr.agent_mean(action_nll(spec, out, tr, self.action_head.log_std))

        # -- value: expectile regression of the mixed team value, and the advantage weights
        weight = step_mask
        if hasattr(self, "target"):
            v_tot = self._team_value(dict(value=self.value, value_head=self.value_head,
                                          mixer=self.mixer), obs, state)
            with torch.no_grad():
                v_next = self._team_value(self.target, tr.obs_next, tr.state_next)
                target = tr.reward * cfg.reward_scale + cfg.gamma * (1.0 - tr.terminated) * v_next
            diff = target - v_tot
            expectile = torch.abs(cfg.expectile - (diff < 0).to(diff.dtype))
            terms["value"] = (expectile * diff.pow(2) * step_mask).sum() / n_steps
            with torch.no_grad():  # per-transition advantage weight, mean 1 over the batch
                w = torch.exp(cfg.td_weight * diff).clamp(max=cfg.weight_clip) * step_mask
                weight = w * n_steps / w.sum().clamp(min=1e-8)
                terms["advantage"] = (diff * step_mask).sum() / n_steps
                terms["weight_max"] = weight.max()

        # -- high level: advantage-weighted forward prediction of the next state
        if cfg.common_skills:
            agents_in = torch.cat([state.groups[0], common[0][..., 0, :]], dim=-1)
            h_agents, h_others = self.predictor([agents_in, state.groups[1]], state.masks)
            pred_a = state.groups[0] + self.predict_agents(h_agents)  # residual: predict change
            pred_o = state.groups[1] + self.predict_others(h_others)
            nxt = tr.state_next
            err_a = (pred_a - nxt.groups[0]).pow(2).mean(-1) * nxt.masks[0]
            err_o = (pred_o - nxt.groups[1]).pow(2).mean(-1) * nxt.masks[1]
            count = nxt.masks[0].sum(-1) + nxt.masks[1].sum(-1)
            per_step = (err_a.sum(-1) + err_o.sum(-1)) / count.clamp(min=1)
            terms["prediction"] = (per_step * step_mask).sum() / n_steps
            terms["prediction_weighted"] = (per_step * weight).sum() / n_steps

        return terms, task_enc

    def _contrastive_pairs(self, valid: torch.Tensor, task_id: torch.Tensor,
                           generator: torch.Generator | None) -> list:
        """``contrastive_samples`` (anchor, positive) pairs per task of the batch, as flat
        indices of its valid (episode, step, agent) positions: another episode, step or agent
        of the same task is the positive."""
        owner = task_id.repeat_interleave(valid[0].numel())
        ok = valid.reshape(-1).to(torch.float32)
        n, pairs = self.cfg.contrastive_samples, []
        for task in torch.unique(task_id):  # one draw per task
            w = ok * (owner == task)
            if w.sum() == 0:
                continue
            idx = torch.multinomial(w.cpu(), 2 * n, replacement=True, generator=generator)
            idx = idx.to(valid.device)
            pairs.append((idx[:n], idx[n:], int(task)))
        return pairs

    def _info_nce(self, pairs: list) -> torch.Tensor:
        """InfoNCE over task-specific skills: each anchor must pick its positive (same task)
        among the positives of the other tasks; logits are bilinear (``q W p`` of unit
        vectors), and same-task pairs other than its own positive are masked out, so agents of
        one task are never pushed apart. With one task there are no negatives: zero."""
        if len({task for _, _, task in pairs}) < 2:
            return self.contrast_w.sum() * 0.0
        q = F.normalize(self.contrast_head(torch.cat([a for a, _, _ in pairs])), dim=-1)
        p = F.normalize(self.contrast_head(torch.cat([b for _, b, _ in pairs])), dim=-1)
        lab = torch.cat([torch.full((len(a),), task, device=q.device) for a, _, task in pairs])
        logits = q @ self.contrast_w @ p.T
        eye = torch.eye(len(lab), dtype=torch.bool, device=q.device)
        logits = logits.masked_fill((lab[:, None] == lab[None, :]) & ~eye, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(lab), device=q.device))

    def after_update(self, update: int) -> None:
        """Hard target copies every ``target_update_interval`` updates."""
        if hasattr(self, "target") and update % self.cfg.target_update_interval == 0:
            copy_targets(self)


def _rows(x: torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
    """Rows of ``x [B, T, A, F]`` at flat (episode, step, agent) indices -> ``[n, F]``."""
    return x.reshape(-1, x.shape[-1])[flat_index]


def _gather_obs(obs: Tokens, flat_index: torch.Tensor) -> Tokens:
    """Observation tokens ``[B, T, A, n_g, F]`` at flat (episode, step, agent) indices."""
    return Tokens([g.reshape(-1, *g.shape[3:])[flat_index] for g in obs.groups],
                  [m.reshape(-1, *m.shape[3:])[flat_index] for m in obs.masks])
