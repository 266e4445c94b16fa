"""ODIS (Zhang et al., ICLR 2023): discrete coordination skills from multi-task data, then a
skill-conditioned offline policy with a conservative value term.

Two stages in one run (``pretrain_updates`` first, as ODIS pretrains 15k then trains 35k):

1. **Skill discovery.** A state encoder (entity transformer over the global state tokens) gives
   each agent logits over ``n_skills`` discrete skills (ODIS: 3); a straight-through
   Gumbel-softmax sample ``z_i`` conditions the action decoder ``pi(a | o_i, z_i)`` (entity
   transformer over the agent's own tokens, ``z_i`` concatenated to its outputs), trained to
   reconstruct the dataset actions, with a KL term to the uniform skill prior (``kl_coef``,
   ODIS's beta).
2. **Coordination policy.** The encoder and decoder are frozen; the dataset's skill of each agent
   is the encoder's argmax. A per-agent skill Q-network ``Q_i(o_i, z)`` (entity transformer, one
   value per skill), mixed by the transformer mixer, is trained by double-Q TD on
   ``r + gamma (1 - term) Q̄_tot(s', z')`` plus a CQL term over skills (``cql_coef``, ODIS's
   ``coef_conservative`` = 5).

Acting is decentralised: ``z_i = argmax_z Q_i(o_i, z)``, then the decoder's greedy action.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from marl.algos.common import (Algorithm, Memory, ValueConfig, action_nll, changed_actions,
                               copy_targets, greedy, make_targets, mean_terms, transitions)
from marl.nets import ActionHead, FamilySpec, Tokens, TransformerMixer, mlp


@dataclass
class OdisConfig(ValueConfig):
    n_skills: int = 3  # ODIS skill_dim (per task set)
    pretrain_updates: int = 1000  # stage 1 length; the rest of `updates` is stage 2
    kl_coef: float = 0.001  # ODIS beta
    gumbel_tau: float = 1.0
    cql_coef: float = 5.0  # ODIS coef_conservative


class ODIS(Algorithm):
    name = "odis"
    has_skills = True

    def __init__(self, spec: FamilySpec, cfg: OdisConfig):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        d, k = cfg.dim, cfg.n_skills
        self.skill_encoder = cfg.transformer(spec.state_dims)
        self.skill_logits = mlp(d, cfg.hidden, k)
        self.decoder = cfg.transformer(cfg.obs_dims(spec))
        self.action_head = ActionHead(spec, d + k, cfg.hidden)
        self.q_encoder = cfg.transformer(cfg.obs_dims(spec))
        self.q_head = mlp(d, cfg.hidden, k)
        self.mixer = TransformerMixer(spec.state_dims, cfg.mixer_dim, cfg.mixer_dim)
        self.target = make_targets(self, ("q_encoder", "q_head", "mixer"))
        self.register_buffer("updates_done", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ networks
    def skill_q(self, obs: Tokens, nets=None) -> torch.Tensor:
        enc, head = (self.q_encoder, self.q_head) if nets is None else (nets["q_encoder"],
                                                                        nets["q_head"])
        return head(enc(obs.groups, obs.masks, outputs=(0,))[0][..., 0, :])

    def decode(self, obs: Tokens, view, z: torch.Tensor) -> torch.Tensor:
        own, e = self.decoder.own_and_entities(obs.groups, obs.masks, self.spec.entity_group)
        ent = (None if e is None
               else torch.cat([e, z[..., None, :].expand(*e.shape[:-1], z.shape[-1])], dim=-1))
        return self.action_head(torch.cat([own, z], dim=-1), ent, view)

    def dataset_skills(self, state: Tokens) -> torch.Tensor:
        """Skill logits of every agent from the global state ``[..., A, n_skills]``."""
        return self.skill_logits(self.skill_encoder(state.groups, state.masks, outputs=(0,))[0])

    @torch.no_grad()
    def act(self, view, avail: torch.Tensor | None, memory: Memory | None = None
            ) -> torch.Tensor:
        obs = self.observe(view, memory)[0]
        z = F.one_hot(self.skill_q(obs).argmax(-1), self.cfg.n_skills).to(obs.groups[0].dtype)
        return greedy(self.spec, self.decode(obs, view, z), avail)

    @torch.no_grad()
    def skills(self, view, memory: Memory | None = None) -> dict[str, torch.Tensor]:
        """Each agent's chosen discrete skill (index) and its skill values."""
        q = self.skill_q(self.observe(view, memory)[0])
        return {"skill": q.argmax(-1), "skill_values": q}

    # ------------------------------------------------------------------ losses
    def loss(self, batches, generator: torch.Generator | None = None):
        cfg = self.cfg
        pretrain = int(self.updates_done) < cfg.pretrain_updates
        terms = []
        for batch in batches if isinstance(batches, (list, tuple)) else [batches]:
            tr = transitions(batch, self.spec, cfg.steps_per_episode, generator, cfg=cfg)
            terms.append(self._pretrain_terms(tr, generator) if pretrain
                         else self._policy_terms(tr))
        stats = mean_terms(terms)
        stats["loss"] = (stats["reconstruction"] + cfg.kl_coef * stats["kl"] if pretrain
                         else stats["td"] + cfg.cql_coef * stats["cql"])
        return stats["loss"], {k: float(v.detach()) for k, v in stats.items()}

    def _pretrain_terms(self, tr, generator):
        logits = self.dataset_skills(tr.state)
        u = torch.rand(logits.shape, generator=generator).to(logits.device)
        gumbel = -torch.log(-torch.log(u.clamp(1e-9, 1 - 1e-9)))
        soft = F.softmax((logits + gumbel) / self.cfg.gumbel_tau, -1)
        z = soft + (F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype) - soft).detach()
        nll = action_nll(self.spec, self.decode(tr.obs, tr.view, z), tr, self.action_head.log_std)
        logp = F.log_softmax(logits, -1)
        kl = (logp.exp() * (logp + torch.log(torch.tensor(float(self.cfg.n_skills))))).sum(-1)
        return {"reconstruction": tr.agent_mean(nll), "kl": tr.agent_mean(kl)}

    def _policy_terms(self, tr):
        cfg = self.cfg
        agents = tr.agents.to(torch.float32)
        with torch.no_grad():
            z_data = self.dataset_skills(tr.state).argmax(-1)
        q = self.skill_q(tr.obs)
        q_taken = q.gather(-1, z_data[..., None])[..., 0] * agents
        q_tot = self.mixer(q_taken, tr.state)
        with torch.no_grad():
            z_next = self.skill_q(tr.obs_next).argmax(-1)
            q_next = self.skill_q(tr.obs_next, self.target).gather(
                -1, z_next[..., None])[..., 0] * agents
            target = tr.reward * cfg.reward_scale + cfg.gamma * (1 - tr.terminated) * \
                self.target["mixer"](q_next, tr.state_next)
        cql = torch.logsumexp(q, -1) - q_taken
        return {"td": tr.step_mean((q_tot - target).pow(2)), "cql": tr.agent_mean(cql)}

    def after_update(self, update: int) -> None:
        self.updates_done.fill_(update)
        if update % self.cfg.target_update_interval == 0:
            copy_targets(self)

    # ------------------------------------------------------------------ what diagnose reads
    @torch.no_grad()
    def probe(self, tr, generator: torch.Generator | None = None,
              foreign_z: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``skill`` ``[B, K, A]`` (each agent's chosen skill), ``changed_by_skill`` (the greedy
        action changes when that skill is replaced by a random other one) and ``value``
        (``Q_tot`` of the data's skills, ``[B, K]``), for ``marl diagnose``."""
        k, obs = self.cfg.n_skills, tr.obs
        q = self.skill_q(obs)
        chosen = q.argmax(-1)
        dtype = obs.groups[0].dtype
        actions = greedy(self.spec, self.decode(obs, tr.view, F.one_hot(chosen, k).to(dtype)), tr.avail)
        shift = torch.randint(1, max(k, 2), chosen.shape, generator=generator).to(chosen.device)
        other = F.one_hot((chosen + shift) % k, k).to(dtype)
        out = {"skill": chosen, "changed_by_skill": changed_actions(
            self.spec, actions, greedy(self.spec, self.decode(obs, tr.view, other), tr.avail))}
        z_data = self.dataset_skills(tr.state).argmax(-1)
        q_taken = q.gather(-1, z_data[..., None])[..., 0] * tr.agents.to(q.dtype)
        out["value"] = self.mixer(q_taken, tr.state)
        return out
