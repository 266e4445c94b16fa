"""Offline datasets: the HDF5 episode format (ODIS keys plus self-describing attributes) and the
data qualities. See ``marl.data.format`` for the schema and ``marl.data.qualities`` for what each
quality means."""

from marl.data.card import dataset_card
from marl.data.errors import DatasetError
from marl.data.format import concat_episodes, read_dataset, write_dataset
from marl.data.qualities import QUALITIES, Quality, check_quality
from marl.data.schema import CONTINUOUS_KEYS, DISCRETE_KEYS, SCHEMA_VERSION, EpisodeData

__all__ = [
    "CONTINUOUS_KEYS",
    "DISCRETE_KEYS",
    "QUALITIES",
    "SCHEMA_VERSION",
    "DatasetError",
    "EpisodeData",
    "Quality",
    "check_quality",
    "concat_episodes",
    "dataset_card",
    "read_dataset",
    "write_dataset",
]
