"""HiSSD: Hierarchical and Separate Skill Discovery (Liu et al., ICLR 2025), on the entity view.

Reads top to bottom: config, networks, acting (decentralised: each agent's own observation),
the losses of one update, then the probes that ``marl diagnose`` reads. Deviations from the
released code, and which setting of each switch is the paper's, are in ``docs/hissd.md``.

Networks (each an entity transformer over one agent's observation tokens, ``marl.nets``):

* **planner** -> **common skills**: one skill token per observation token (own, allies,
  enemies), shared team knowledge. Trained by the decoder's action loss and by **forward
  prediction**, weighted per transition by ``exp(td_weight * A_t)`` (clipped, normalised to mean
  1 over the batch), where ``A_t`` is the offline advantage under the team value below:
  transitions that did better than expected shape the common skills more.
  ``forward_model="team"`` (the released code's ``MergeRec``): a transformer over every agent's
  own observation token and skills, *without* the global state at t, predicts the state tokens
  at t+1 *and* every agent's action at t, so the skills must carry what the team does next.
  ``"state"``: the global state tokens at t with each agent's own skill predict the change of
  the state (marl's earlier predictor, which mostly learned to encode the agent's own action).
* **task-specific skill** ``z_i = tanh(LayerNorm(head(encoder(o_i))))``: trained by an InfoNCE
  loss on a projection of ``z`` (SimCLR order), in which samples of the same task are
  positives and samples of the other tasks the negatives. An unseen task's ``z`` comes from the
  same encoder. (``contrast_input="encoding"``: a sibling head of ``z`` carries the InfoNCE
  and ``z`` itself is trained by behaviour cloning alone, marl's earlier setting, in which ``z``
  saturated to one constant.)
* **decoder**: observation tokens, each with its common-skill token concatenated; each output
  token concatenated with ``z_i`` feeds the action head (SMAC: 6 own logits + one attack logit
  per enemy token; MuJoCo: one Gaussian mean per joint token). Trained by behaviour cloning.
* **value** ``V_i(o_i)`` per agent, mixed by the **transformer mixer** into ``V_tot(s)`` (the
  mean over agents with ``mixer_mean``, so it does not grow with team size).
  ``value_target="monte_carlo"``: regressed (MSE) on the discounted return-to-go of the data,
  which are whole episodes, and ``A_t = G_t - V_tot(s_t)`` (AWR's advantage).
  ``"td_expectile"``: an expectile (IQL's sign) towards ``r_t + gamma (1 - term_t)
  V̄_tot(t+1)`` from target networks (Polyak steps of ``target_tau``, or hard copies every
  ``target_update_interval`` updates with ``target_tau = 0``), ``A_t`` the TD error.

Nothing is recurrent, so every loss runs on all sampled timesteps at once: an update draws
``steps_per_episode`` transitions from each sampled episode (0: every transition) and runs
each network once over ``[episodes, steps, agents]``.

Ablations are switches: ``common_skills``, ``task_skills``, ``advantage_weighting``,
``contrastive``, and the repairs above.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from marl.algos.common import (Algorithm, Memory, ValueConfig, action_nll, changed_actions,
                               copy_targets, greedy, make_targets, soft_update_targets,
                               transitions)
from marl.nets import ActionHead, FamilySpec, Tokens, TransformerMixer, mlp


@dataclass
class HissdConfig(ValueConfig):
    skill_dim: int = 64  # common-skill tokens and task-specific skills
    expectile: float = 0.9  # tau of the expectile value loss (value_target="td_expectile")
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
    # what the InfoNCE term tells apart: every task, or (MuJoCo) every robot, so that the
    # partitions of one robot, which the same behaviour plays, are not pushed apart
    contrast_by: str = "task"
    # the repairs of docs/hissd.md; the other setting of each is marl's earlier behaviour
    task_skill_norm: bool = True  # LayerNorm before z's tanh (released code)
    contrast_input: str = "z"  # InfoNCE on a projection of z; "encoding": on a sibling of z
    value_target: str = "monte_carlo"  # or "td_expectile" (bootstrapped expectile)
    mixer_mean: bool = True  # the team value averages the agents (False: QMIX's sum)
    target_tau: float = 0.005  # td_expectile: Polyak step per update; 0: hard copies
    forward_model: str = "team"  # predict s' and every a_t without s_t; "state": s_t + own skill
    # memory: back-propagate one task's graph at a time (same gradients; ``backward``)
    per_task_backward: bool = False

    CHOICES = {"contrast_input": ("z", "encoding"), "value_target": ("monte_carlo", "td_expectile"),
               "forward_model": ("team", "state"), "contrast_by": ("task", "robot")}


# marl's HiSSD before the repairs of docs/hissd.md, as overrides of ``model.*``: the ablation
# row and benchmark setting "earlier"
EARLIER = {"task_skill_norm": False, "contrast_input": "encoding", "value_target": "td_expectile",
           "mixer_mean": False, "target_tau": 0.0, "forward_model": "state"}


class HiSSD(Algorithm):
    name = "hissd"
    has_skills = True

    def __init__(self, spec: FamilySpec, cfg: HissdConfig):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        d, h, k = cfg.dim, cfg.hidden, cfg.skill_dim
        obs_dims = cfg.obs_dims(spec)
        if cfg.common_skills:  # with `history`, the past own tokens are one more group
            self.planner = cfg.transformer(obs_dims + ((cfg.past_dim(spec),) if cfg.history
                                                       else ()))
            self.common_head = mlp(d, h, k, nn.Tanh())
            a_dim, o_dim = spec.state_dims
            if cfg.forward_model == "team":
                # agents: own observation token + own skill; others: the agents' skills about
                # the entities the state's other tokens describe
                self.predictor = cfg.transformer((obs_dims[0] + k, k))
                self.predict_actions = ActionHead(spec, d + k, h)
            else:  # state tokens at t, agent tokens carrying the agent's own common skill
                self.predictor = cfg.transformer((a_dim + k, o_dim))
            self.predict_agents, self.predict_others = nn.Linear(d, a_dim), nn.Linear(d, o_dim)
        if cfg.task_skills:
            self.task_encoder = cfg.transformer(obs_dims)
            # Linear-ReLU-Linear(-LayerNorm)-Tanh, the released code's act_proj
            self.task_head = nn.Sequential(*mlp(d, h, k), *([nn.LayerNorm(k)] if cfg.task_skill_norm
                                                          else []), nn.Tanh())
            if cfg.contrastive:
                self.contrast_head = mlp(k if cfg.contrast_input == "z" else d, h, k)
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
            self.mixer = TransformerMixer(spec.state_dims, cfg.mixer_dim, cfg.mixer_dim,
                                          mean_agents=cfg.mixer_mean)
            if cfg.value_target == "td_expectile":
                self.target = make_targets(self, ("value", "value_head", "mixer"))

        # the InfoNCE label of each task id (``use_tasks``); the task ids themselves until then
        self.register_buffer("contrast_label", torch.zeros(0, dtype=torch.long), persistent=False)

    def use_tasks(self, tasks: list[str]) -> None:
        """The training tasks, in task-id order: with ``contrast_by="robot"`` the InfoNCE
        labels are the MuJoCo robots, so HalfCheetah-2x3 and -6x1 count as one task."""
        if self.cfg.contrast_by == "task":
            return
        robots = []
        for task in tasks:
            family, _, map_name = task.partition(":")
            if family != "mamujoco":
                raise ValueError(f"model.contrast_by=robot groups MuJoCo tasks by robot; "
                                 f"{task!r} is not a mamujoco task (use contrast_by=task)")
            from envs.mamujoco import parse_map

            robots.append(parse_map(map_name).robot)
        labels = [sorted(set(robots)).index(r) for r in robots]
        self.contrast_label = torch.tensor(labels, dtype=torch.long,
                                           device=self.contrast_label.device)

    # ------------------------------------------------------------------ skills and actions
    def common_skill_tokens(self, obs: Tokens, past: Tokens | None = None
                            ) -> list[torch.Tensor]:
        """Common skills: one token per observation token, per group ``[..., n_g, skill]``;
        with ``history`` the planner also reads the past own tokens ``past``."""
        groups, masks = list(obs.groups), list(obs.masks)
        if past is not None:
            groups, masks = groups + past.groups, masks + past.masks
        out = self.planner(groups, masks, outputs=tuple(range(len(obs.groups))))
        return [self.common_head(x) for x in out]

    def task_encoding(self, obs: Tokens) -> torch.Tensor:
        """The task encoder's own-token output ``[..., dim]``."""
        return self.task_encoder(obs.groups, obs.masks, outputs=(0,))[0][..., 0, :]

    def task_skill(self, obs: Tokens) -> torch.Tensor:
        """Each agent's task-specific skill ``z [..., skill]``."""
        return self.task_head(self.task_encoding(obs))

    def logits(self, obs: Tokens, view, common: list[torch.Tensor] | None = None,
               z: torch.Tensor | None = None, past: Tokens | None = None) -> torch.Tensor:
        """Action logits (discrete) or means (continuous) of every agent from its own tokens,
        its common skills and its task skill ``z`` (computed when not given)."""
        groups = list(obs.groups)
        if self.cfg.common_skills:
            common = self.common_skill_tokens(obs, past) if common is None else common
            groups = [torch.cat([x, c], dim=-1) for x, c in zip(groups, common)]
        own, ent = self.decoder.own_and_entities(groups, obs.masks, self.spec.entity_group)
        if self.cfg.task_skills:
            z = self.task_skill(obs) if z is None else z
            own = torch.cat([own, z], dim=-1)
            if ent is not None:
                ent = torch.cat([ent, z[..., None, :].expand(*ent.shape[:-1], z.shape[-1])], -1)
        return self.action_head(own, ent, view)

    @torch.no_grad()
    def act(self, view, avail: torch.Tensor | None, memory: Memory | None = None
            ) -> torch.Tensor:
        """Greedy decentralised actions of every agent: argmax over available actions
        (discrete) or the Gaussian means (continuous)."""
        obs, past = self.observe(view, memory)
        return greedy(self.spec, self.logits(obs, view, past=past), avail)

    @torch.no_grad()
    def skills(self, view, memory: Memory | None = None) -> dict[str, torch.Tensor]:
        """Each agent's common skill (its own token's) and task-specific skill ``z``; for
        continuous families also the common skill of every joint token (``joint_common``
        ``[..., J, k]``, with ``joint_mask``)."""
        obs, past = self.observe(view, memory)
        out = {}
        if self.cfg.common_skills:
            tokens = self.common_skill_tokens(obs, past)
            out["common"] = tokens[0][..., 0, :]
            if not self.spec.discrete:
                out["joint_common"] = tokens[self.spec.entity_group]
                out["joint_mask"] = obs.masks[self.spec.entity_group]
        if self.cfg.task_skills:
            out["task"] = self.task_skill(obs)
        return out

    # ------------------------------------------------------------------ one update's losses
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
            batch_terms, contrast = self._batch_losses(tr)
            for k, v in batch_terms.items():
                terms.setdefault(k, []).append(v)
            pairs += [(flat_rows(contrast, a), flat_rows(contrast, b), task) for a, b, task in pair_index]
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
                leaves += [(self._contrast_features(_gather_obs(tr.obs, a)).requires_grad_(),
                            self._contrast_features(_gather_obs(tr.obs, b)).requires_grad_(), task)
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
            batch_terms, contrast = self._batch_losses(tr)
            surrogate = self._weighted_sum(batch_terms) / len(batches)
            for a, b, _ in pair_index:
                ga, gb = pair_grads.pop(0)
                if ga is not None:  # None: a single task, no negatives, no gradient
                    surrogate = surrogate + (flat_rows(contrast, a) * ga).sum() + (flat_rows(contrast, b) * gb).sum()
            surrogate.backward()
            for k, v in batch_terms.items():
                terms.setdefault(k, []).append(float(v.detach()))
            del tr, batch_terms, contrast, surrogate
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
        tr = transitions(batch, self.spec, self.cfg.steps_per_episode, generator, self.cfg.gamma,
                         cfg=self.cfg)
        pairs = []
        if self.cfg.task_skills and self.cfg.contrastive:
            label = (self.contrast_label[tr.task_id] if len(self.contrast_label)
                     else tr.task_id)
            pairs = self._contrastive_pairs(tr.acting, label, generator)
        return tr, pairs

    def _contrast_features(self, obs: Tokens) -> torch.Tensor:
        """What the InfoNCE term compares: ``z`` (``contrast_input="z"``) or the encoding."""
        encoding = self.task_encoding(obs)
        return self.task_head(encoding) if self.cfg.contrast_input == "z" else encoding

    def _batch_losses(self, tr) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """The loss terms of one batch's transitions, and what its contrastive pairs compare."""
        cfg, spec = self.cfg, self.spec
        obs, step_mask, n_steps = tr.obs, tr.step_mask, tr.n_steps
        terms: dict[str, torch.Tensor] = {}

        # -- skills
        common = self.common_skill_tokens(obs, tr.past) if cfg.common_skills else None
        encoding = self.task_encoding(obs) if cfg.task_skills else None
        z = self.task_head(encoding) if cfg.task_skills else None

        # -- low level: behaviour cloning through both skills
        out = self.logits(obs, tr.view, common, z)
        terms["bc"] = tr.agent_mean(action_nll(spec, out, tr, self.action_head.log_std))

        # -- value, and the advantage weight of each transition
        weight = step_mask
        if hasattr(self, "value"):
            v_tot, target = self._value_and_target(tr)
            diff = target - v_tot
            if cfg.value_target == "td_expectile":  # IQL's sign: over-weight positive errors
                diff_weight = torch.abs(cfg.expectile - (diff < 0).to(diff.dtype))
            else:
                diff_weight = torch.ones_like(diff)
            terms["value"] = (diff_weight * diff.pow(2) * step_mask).sum() / n_steps
            with torch.no_grad():
                weight = self._advantage_weight(diff, step_mask)
                terms["advantage"] = (diff * step_mask).sum() / n_steps
                terms["weight_max"] = weight.max()

        # -- high level: advantage-weighted forward prediction
        if cfg.common_skills:
            per_step, parts = self._prediction_error(tr, common)
            terms["prediction"] = (per_step * step_mask).sum() / n_steps
            terms["prediction_weighted"] = (per_step * weight).sum() / n_steps
            for name, part in parts.items():
                terms[f"prediction_{name}"] = (part.detach() * step_mask).sum() / n_steps

        contrast = None
        if cfg.task_skills and cfg.contrastive:
            contrast = z if cfg.contrast_input == "z" else encoding
        return terms, contrast

    def _team_value(self, nets: dict, obs: Tokens, state: Tokens) -> torch.Tensor:
        own = nets["value"](obs.groups, obs.masks, outputs=(0,))[0][..., 0, :]
        v = nets["value_head"](own)[..., 0]
        return nets["mixer"](v * state.masks[0].to(v.dtype), state)

    def _value_and_target(self, tr) -> tuple[torch.Tensor, torch.Tensor]:
        """``V_tot(s_t)`` ``[B, K]`` (with its graph) and its regression target (without)."""
        cfg = self.cfg
        v_tot = self._team_value(dict(value=self.value, value_head=self.value_head,
                                      mixer=self.mixer), tr.obs, tr.state)
        with torch.no_grad():
            if cfg.value_target == "monte_carlo":
                target = tr.returns * cfg.reward_scale
            else:
                v_next = self._team_value(self.target, tr.obs_next, tr.state_next)
                target = tr.reward * cfg.reward_scale + cfg.gamma * (1.0 - tr.terminated) * v_next
        return v_tot, target

    def _advantage_weight(self, advantage: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        """``exp(td_weight * A)``, clipped, normalised to mean 1 over the real transitions."""
        w = torch.exp(self.cfg.td_weight * advantage).clamp(max=self.cfg.weight_clip) * step_mask
        return w * step_mask.sum().clamp(min=1.0) / w.sum().clamp(min=1e-8)

    def _team_others(self, tokens: torch.Tensor, mask: torch.Tensor):
        """The agents' skill tokens about the entities the state's other tokens describe:
        every agent's in agent order (MuJoCo joints), or their mean over the agents that see
        each entity (SMAC enemies, MPE landmarks). ``tokens [..., A, n, k]`` -> ``[..., M, k]``."""
        if self.spec.others_per_agent:
            return tokens.flatten(-3, -2), mask.flatten(-2)
        m = mask[..., None].to(tokens.dtype)
        return (tokens * m).sum(-3) / m.sum(-3).clamp(min=1.0), mask.any(-2)

    def _prediction_error(self, tr, common: list[torch.Tensor]
                          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The forward model's error of every transition ``[B, K]``, and its parts (next-state
        squared error; with ``forward_model="team"`` also the NLL of the agents' actions)."""
        spec, nxt = self.spec, tr.state_next
        parts = {}
        if self.cfg.forward_model == "team":
            own_skill = common[0][..., 0, :]
            agents_in = torch.cat([tr.obs.groups[0][..., 0, :], own_skill], dim=-1)
            others, others_mask = self._team_others(common[-1], tr.obs.masks[-1])
            h_agents, h_others = self.predictor([agents_in, others], [tr.agents, others_mask])
            pred_a, pred_o = self.predict_agents(h_agents), self.predict_others(h_others)
            target_o = nxt.masks[1] & others_mask  # entities some agent saw at t
            ent = None
            if spec.entity_group is not None:
                seen = common[spec.entity_group]
                ent = torch.cat([h_agents[..., None, :].expand(*seen.shape[:-1], h_agents.shape[-1]),
                                 seen], dim=-1)
            logits = self.predict_actions(torch.cat([h_agents, own_skill], -1), ent, tr.view)
            nll = action_nll(spec, logits, tr, self.predict_actions.log_std) * tr.acting
            parts["action"] = nll.sum(-1) / tr.acting.sum(-1).clamp(min=1)
        else:
            state = tr.state
            agents_in = torch.cat([state.groups[0], common[0][..., 0, :]], dim=-1)
            h_agents, h_others = self.predictor([agents_in, state.groups[1]], state.masks)
            pred_a = state.groups[0] + self.predict_agents(h_agents)  # residual: predict change
            pred_o = state.groups[1] + self.predict_others(h_others)
            target_o = nxt.masks[1]
        err_a = (pred_a - nxt.groups[0]).pow(2).mean(-1) * nxt.masks[0]
        err_o = (pred_o - nxt.groups[1]).pow(2).mean(-1) * target_o
        count = nxt.masks[0].sum(-1) + target_o.sum(-1)
        parts["state"] = (err_a.sum(-1) + err_o.sum(-1)) / count.clamp(min=1)
        return sum(parts.values()), parts

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
        """Target networks (``td_expectile``): a Polyak step of ``target_tau`` every update, or
        hard copies every ``target_update_interval`` updates with ``target_tau = 0``."""
        if not hasattr(self, "target"):
            return
        if self.cfg.target_tau > 0:
            soft_update_targets(self, self.cfg.target_tau)
        elif update % self.cfg.target_update_interval == 0:
            copy_targets(self)

    # ------------------------------------------------------------------ what diagnose reads
    @torch.no_grad()
    def probe(self, tr, generator: torch.Generator | None = None,
              foreign_z: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The skill-health measurements of ``marl diagnose`` on transitions ``tr`` (drawn with
        returns-to-go): ``z`` ``[B, K, A, k]``; ``changed_by_z`` / ``changed_by_common``
        ``[B, K, A]`` (the greedy action changes when each agent's ``z`` is replaced by a random
        one of ``foreign_z [n, k]``, another task's, or when the common skills are shuffled
        across agents and steps); ``prediction_error`` and ``prediction_error_shuffled``
        ``[B, K]``; ``value`` (``V_tot``), ``advantage`` and ``weight`` ``[B, K]``."""
        cfg, spec, obs = self.cfg, self.spec, tr.obs
        out: dict[str, torch.Tensor] = {}
        common = self.common_skill_tokens(obs, tr.past) if cfg.common_skills else None
        z = self.task_skill(obs) if cfg.task_skills else None
        actions = greedy(spec, self.logits(obs, tr.view, common, z), tr.avail)
        if z is not None:
            out["z"] = z
            if foreign_z is not None and len(foreign_z):
                pick = torch.randint(len(foreign_z), z.shape[:-1], generator=generator)
                swapped = self.logits(obs, tr.view, common, foreign_z[pick.to(z.device)])
                out["changed_by_z"] = changed_actions(spec, actions, greedy(spec, swapped, tr.avail))
        if common is not None:
            rows = common[0].shape[:-2].numel()
            perm = torch.randperm(rows, generator=generator).to(common[0].device)
            shuffled = [c.reshape(rows, *c.shape[-2:])[perm].reshape(c.shape) for c in common]
            other = greedy(spec, self.logits(obs, tr.view, shuffled, z), tr.avail)
            out["changed_by_common"] = changed_actions(spec, actions, other)
            out["prediction_error"] = self._prediction_error(tr, common)[0]
            out["prediction_error_shuffled"] = self._prediction_error(tr, shuffled)[0]
        if hasattr(self, "value"):
            v_tot, target = self._value_and_target(tr)
            out["value"] = v_tot
            out["advantage"] = target - v_tot
            out["weight"] = self._advantage_weight(target - v_tot, tr.step_mask)
        return out


def flat_rows(x: torch.Tensor, flat_index: torch.Tensor) -> torch.Tensor:
    """Rows of ``x [B, T, A, F]`` at flat (episode, step, agent) indices -> ``[n, F]``."""
    return x.reshape(-1, x.shape[-1])[flat_index]


def _gather_obs(obs: Tokens, flat_index: torch.Tensor) -> Tokens:
    """Observation tokens ``[B, T, A, n_g, F]`` at flat (episode, step, agent) indices."""
    return Tokens([g.reshape(-1, *g.shape[3:])[flat_index] for g in obs.groups],
                  [m.reshape(-1, *m.shape[3:])[flat_index] for m in obs.masks])
