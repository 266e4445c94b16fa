"""Data qualities: the one place they are defined.

A quality names *which behaviour policy* produced a dataset's episodes, following ODIS/HiSSD
(``../shared/research/hissd-reference.md`` §4): ``expert``, ``medium``, ``medium-replay``,
``medium-expert`` and ``poor``. Every dataset file records its quality name and this definition
(attributes ``quality`` and ``quality_definition``), so a file explains itself without this code.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

from marl.data.errors import DatasetError


@dataclass(frozen=True)
class Quality:
    """One data quality.

    ``target`` is the performance the behaviour policy is meant to have, in words; the numeric
    fields say the same for code (a collector choosing a snapshot, a test checking one):
    ``win_rate`` the SMAC greedy win-rate range of the policy, ``return_fraction`` the range of
    its mean return as a fraction of the expert's (other families), ``components`` the qualities
    a mixed dataset is made of, in equal parts.
    """

    name: str
    description: str
    target: str
    win_rate: tuple[float, float] | None = None
    return_fraction: tuple[float, float] | None = None
    components: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """JSON-friendly form (written into dataset attributes)."""
        out = asdict(self)
        out["win_rate"] = list(self.win_rate) if self.win_rate else None
        out["return_fraction"] = list(self.return_fraction) if self.return_fraction else None
        out["components"] = list(self.components)
        return out


QUALITIES: dict[str, Quality] = {
    q.name: q
    for q in (
        Quality(
            name="expert",
            description="episodes of the final (fully trained) behaviour policy, acting greedily "
            "(MuJoCo: with sampled actions where those score better)",
            target="the behaviour policy's final performance (SMAC: its final greedy win rate, "
            "typically above 90 % on maps it can solve)",
            win_rate=None,
            return_fraction=(1.0, 1.0),
        ),
        Quality(
            name="medium",
            description="episodes of a training snapshot at roughly half of expert performance, "
            "acting greedily (MuJoCo: with sampled actions where those score better)",
            target="SMAC: greedy win rate 40-60 % where the expert wins at least 80 % (half of "
            "such an expert); otherwise, and for other families, a score about halfway from "
            "the first snapshot's to the expert's",
            win_rate=(0.4, 0.6),
            return_fraction=(0.4, 0.6),
        ),
        Quality(
            name="medium-replay",
            description="the training rollouts (exploratory replay buffer) collected while "
            "training up to the medium snapshot, latest episodes last",
            target="everything the learner experienced before reaching medium performance",
            components=(),
        ),
        Quality(
            name="medium-expert",
            description="half medium episodes followed by half expert episodes",
            target="a mixture: medium and expert episodes in equal numbers",
            components=("medium", "expert"),
        ),
        Quality(
            name="poor",
            description="episodes of an early training snapshot, acting greedily (MuJoCo: with "
            "sampled actions where those score better)",
            target="well below medium (SMAC: greedy win rate under 20 %; other families: mean "
            "return under a quarter of the expert's)",
            win_rate=(0.0, 0.2),
            return_fraction=(0.0, 0.25),
        ),
    )
}

# Spellings found in other code bases (ODIS/D4RL style names with underscores).
ALIASES = {name.replace("-", "_"): name for name in QUALITIES if "-" in name}


def check_quality(name: object) -> Quality:
    """The Quality called ``name`` (``medium_replay`` is accepted for ``medium-replay``), or
    DatasetError listing the known names with the closest one suggested."""

    if isinstance(name, str):
        key = ALIASES.get(name, name)
        if key in QUALITIES:
            return QUALITIES[key]
    close = difflib.get_close_matches(str(name), list(QUALITIES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DatasetError(f"unknown data quality {name!r}{hint}; known qualities: {list(QUALITIES)}")


def checked_quality(name: object, where: str) -> Quality:
    """``check_quality`` with the file ``where`` named in its error."""
    try:
        return check_quality(name)
    except DatasetError as exc:
        raise DatasetError(f"{where}: attribute 'quality': {exc}") from None
