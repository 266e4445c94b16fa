"""UPDeT-m: an entity-transformer Q-network with the transformer mixer and a conservative term.

ODIS's UPDeT-m baseline, offline: each agent's Q-values come from the entity transformer over
its observation tokens through the shared action head (6 own Q-values + one per enemy token, so
any number of enemies fits); the Q-values of the dataset actions are mixed monotonically into
``Q_tot(s, a)`` by the transformer mixer and regressed on
``r + gamma (1 - term) Q̄_tot(s', a')`` with ``a'`` the online network's greedy available
actions evaluated by the target network (double Q); a CQL term
``logsumexp_a Q_i(o, a) - Q_i(o, a_data)`` per acting agent keeps values of unseen actions low
(ODIS's ``coef_conservative`` = 5). Discrete actions only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marl.algos.common import (Algorithm, Memory, ValueConfig, copy_targets, greedy,
                               make_targets, masked_logits, mean_terms, transitions)
from marl.nets import ActionHead, FamilySpec, Tokens, TransformerMixer


@dataclass
class UpdetConfig(ValueConfig):
    CONTINUOUS_ACTIONS = False  # Q-values over discrete actions
    cql_coef: float = 5.0  # ODIS's coef_conservative


class UPDeT(Algorithm):
    name = "updet"
    has_skills = False

    def __init__(self, spec: FamilySpec, cfg: UpdetConfig):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        self.encoder = cfg.transformer(cfg.obs_dims(spec))
        self.q_head = ActionHead(spec, cfg.dim, cfg.hidden)
        self.mixer = TransformerMixer(spec.state_dims, cfg.mixer_dim, cfg.mixer_dim)
        self.target = make_targets(self, ("encoder", "q_head", "mixer"))

    def q_values(self, obs: Tokens, nets=None) -> torch.Tensor:
        encoder, head = (self.encoder, self.q_head) if nets is None else (nets["encoder"],
                                                                          nets["q_head"])
        own, entities = encoder.own_and_entities(obs.groups, obs.masks, self.spec.entity_group)
        return head(own, entities)

    @torch.no_grad()
    def act(self, view, avail: torch.Tensor | None, memory: Memory | None = None
            ) -> torch.Tensor:
        return greedy(self.spec, self.q_values(self.observe(view, memory)[0]), avail)

    def loss(self, batches, generator: torch.Generator | None = None):
        cfg, terms = self.cfg, []
        for batch in batches if isinstance(batches, (list, tuple)) else [batches]:
            tr = transitions(batch, self.spec, cfg.steps_per_episode, generator, cfg=cfg)
            agents = tr.agents.to(torch.float32)
            q = self.q_values(tr.obs)
            q_taken = q.gather(-1, tr.actions[..., None])[..., 0] * agents
            q_tot = self.mixer(q_taken, tr.state)
            with torch.no_grad():
                next_actions = masked_logits(self.q_values(tr.obs_next), tr.avail_next).argmax(-1)
                q_next = self.q_values(tr.obs_next, self.target).gather(
                    -1, next_actions[..., None])[..., 0] * agents
                target = tr.reward * cfg.reward_scale + cfg.gamma * (1 - tr.terminated) * \
                    self.target["mixer"](q_next, tr.state_next)
            cql = torch.logsumexp(masked_logits(q, tr.avail), -1) - q_taken
            terms.append({"td": tr.step_mean((q_tot - target).pow(2)),
                          "cql": tr.agent_mean(cql), "q_taken": tr.agent_mean(q_taken)})
        stats = mean_terms(terms)
        stats["loss"] = stats["td"] + cfg.cql_coef * stats["cql"]
        return stats["loss"], {k: float(v.detach()) for k, v in stats.items()}

    def after_update(self, update: int) -> None:
        if update % self.cfg.target_update_interval == 0:
            copy_targets(self)
