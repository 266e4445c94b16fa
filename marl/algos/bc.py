"""BC: the entity transformer trained by behaviour cloning on the multi-task data.

The baseline that ODIS's issue #5 found hard to beat: one entity transformer over each agent's
observation tokens, the shared action head (6 own logits + one attack logit per enemy token on
SMAC, per-joint Gaussian means on MuJoCo), and the masked negative log-likelihood of the dataset
actions. No skills, no value, no mixer: HiSSD with every skill switched off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from marl.algos.common import (Algorithm, Memory, NetConfig, action_nll, greedy, mean_terms,
                               transitions)
from marl.nets import ActionHead, FamilySpec, Tokens


@dataclass
class BCConfig(NetConfig):
    pass


class BC(Algorithm):
    name = "bc"
    has_skills = False

    def __init__(self, spec: FamilySpec, cfg: BCConfig):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        self.encoder = cfg.transformer(cfg.obs_dims(spec) + ((cfg.past_dim(spec),)
                                                             if cfg.history else ()))
        self.action_head = ActionHead(spec, cfg.dim, cfg.hidden)

    def logits(self, obs: Tokens, view, past: Tokens | None = None) -> torch.Tensor:
        """Action logits (means) from the observation tokens and, with ``history``, the past
        own tokens as more tokens of the same sequence."""
        groups, masks = list(obs.groups), list(obs.masks)
        if past is not None:
            groups, masks = groups + past.groups, masks + past.masks
        own, entities = self.encoder.own_and_entities(groups, masks, self.spec.entity_group)
        return self.action_head(own, entities, view)

    @torch.no_grad()
    def act(self, view, avail: torch.Tensor | None, memory: Memory | None = None
            ) -> torch.Tensor:
        obs, past = self.observe(view, memory)
        return greedy(self.spec, self.logits(obs, view, past), avail)

    def loss(self, batches, generator: torch.Generator | None = None):
        terms = []
        for batch in batches if isinstance(batches, (list, tuple)) else [batches]:
            tr = transitions(batch, self.spec, self.cfg.steps_per_episode, generator,
                             cfg=self.cfg)
            nll = action_nll(self.spec, self.logits(tr.obs, tr.view, tr.past), tr,
                             self.action_head.log_std)
            terms.append({"bc": tr.agent_mean(nll)})
        stats = mean_terms(terms)
        stats["loss"] = stats["bc"]
        return stats["loss"], {k: float(v.detach()) for k, v in stats.items()}

    def after_update(self, update: int) -> None:
        pass
