"""BC: the entity transformer trained by behaviour cloning on the multi-task data.

The baseline that ODIS's issue #5 found hard to beat: one entity transformer over each agent's
observation tokens, the shared action head (6 own logits + one attack logit per enemy token on
SMAC, per-joint Gaussian means on MuJoCo), and the masked negative log-likelihood of the dataset
actions. No skills, no value, no mixer: HiSSD with every skill switched off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from marl.algos.common import NetConfig, action_nll, greedy, mean_terms, transitions
from marl.nets import ActionHead, FamilySpec, Tokens


@dataclass
class BCConfig(NetConfig):
    pass


class BC(nn.Module):
    name = "bc"
    has_skills = False

    def __init__(self, spec: FamilySpec, cfg: BCConfig):
        super().__init__()
        self.spec, self.cfg = spec, cfg
        self.encoder = cfg.transformer(spec.obs_dims)
        self.action_head = ActionHead(spec, cfg.dim, cfg.hidden)

    def logits(self, obs: Tokens, view) -> torch.Tensor:
        own, entities = self.encoder.own_and_entities(obs.groups, obs.masks,
                                                      self.spec.entity_group)
        return self.action_head(own, entities, view)

    @torch.no_grad()
    def act(self, view, avail: torch.Tensor | None) -> torch.Tensor:
        return greedy(self.spec, self.logits(self.spec.obs_tokens(view), view), avail)

    def loss(self, batches, generator: torch.Generator | None = None):
        terms = []
        for batch in batches if isinstance(batches, (list, tuple)) else [batches]:
            tr = transitions(batch, self.spec, self.cfg.steps_per_episode, generator)
            nll = action_nll(self.spec, self.logits(tr.obs, tr.view), tr, self.action_head.log_std)
            terms.append({"bc": tr.agent_mean(nll)})
        stats = mean_terms(terms)
        stats["loss"] = stats["bc"]
        return stats["loss"], {k: float(v.detach()) for k, v in stats.items()}

    def after_update(self, update: int) -> None:
        pass
