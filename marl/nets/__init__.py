"""Networks shared by the algorithms: token views of each task family (``tokens``), the entity
transformer (``transformer``), action heads (``heads``) and the transformer mixer (``mixer``)."""

from marl.nets.heads import ActionHead
from marl.nets.mixer import TransformerMixer
from marl.entity import FamilySpec, Tokens
from marl.nets.tokens import family_spec, with_agent_tokens
from marl.nets.transformer import EntityTransformer, mlp

__all__ = ["ActionHead", "EntityTransformer", "FamilySpec", "Tokens", "TransformerMixer",
           "family_spec", "mlp", "with_agent_tokens"]
