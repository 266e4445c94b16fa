"""What a dataset's arrays must satisfy beyond their shapes (ODIS's conventions: ``filled`` a
prefix, ``terminated`` only at a true end, actions among the available ones, one-hot rows equal
to actions) and the streaming SHA-256 checksums that name a damaged key."""

from __future__ import annotations

import hashlib
import json
from typing import Iterable

import numpy as np

import envs
from marl.data.errors import DatasetError
from marl.data.schema import MEANING_ATTRS, WON_KEY, keys_for

# ---------------------------------------------------------------------------------- semantics
def check_semantics(arrays: dict[str, np.ndarray], layout: dict, where: str,
                    battle_won: np.ndarray | None = None) -> None:
    """The EpisodeBatch conventions of the module doc; DatasetError naming the key and the
    first offending episode and step otherwise."""
    check_episodes(arrays, where, battle_won)
    n_actions = arrays["avail_actions"].shape[-1] if "avail_actions" in arrays else None
    for key in keys_for(layout.get("action_type", "discrete")):
        check_key_block(key, arrays[key], arrays["filled"], arrays["actions"], n_actions, layout,
                   where)


def _fail(where: str, key: str, bad: np.ndarray, what: str, first: int = 0) -> None:
    e, t = (int(i) for i in np.argwhere(bad)[0])
    raise DatasetError(f"{where}: key {key!r}: episode {first + e} step {t}: {what}")


def check_episodes(arrays: dict[str, np.ndarray], where: str,
                    battle_won: np.ndarray | None) -> None:
    """The conventions of the small per-step keys: ``filled`` one block from step 0,
    ``terminated`` only at the last transition, ``reward`` finite and 0 from the post-terminal
    step on, won battles terminated."""
    filled = arrays["filled"][..., 0]
    steps = np.arange(filled.shape[1])[None, :]
    if not np.isin(filled, (0, 1)).all():
        _fail(where, "filled", ~np.isin(filled, (0, 1)), "filled must be 0 or 1")
    lengths = filled.sum(1)
    if (filled != (steps < lengths[:, None])).any():
        _fail(where, "filled", filled != (steps < lengths[:, None]),
              "filled must be 1 for steps 0..L-1 and 0 after (one contiguous block from step 0)")
    if (lengths < 2).any():
        e = int(np.flatnonzero(lengths < 2)[0])
        raise DatasetError(f"{where}: key 'filled': episode {e} has {lengths[e]} filled steps; "
                           "expected at least 2 (one transition and the post-terminal step)")
    term = arrays["terminated"][..., 0]
    allowed = steps == (lengths - 2)[:, None]
    if not np.isin(term, (0, 1)).all() or (term.astype(bool) & ~allowed).any():
        _fail(where, "terminated", ~np.isin(term, (0, 1)) | (term.astype(bool) & ~allowed),
              "terminated may only be 1, and only at step L-2 (the last transition)")
    reward = arrays["reward"][..., 0]
    if not np.isfinite(reward).all():
        _fail(where, "reward", ~np.isfinite(reward), "reward is not finite")
    after = steps >= (lengths - 1)[:, None]
    if (reward[after] != 0).any():
        _fail(where, "reward", after & (reward != 0),
              "reward must be 0 from the post-terminal step L-1 on")
    if battle_won is not None:
        won_not_term = battle_won.astype(bool) & (term.sum(1) == 0)
        if won_not_term.any():
            e = int(np.flatnonzero(won_not_term)[0])
            raise DatasetError(f"{where}: key {WON_KEY!r}: episode {e} is marked won but its "
                               "terminated flag is 0 everywhere (a won battle terminates)")


def check_key_block(key: str, block: np.ndarray, filled: np.ndarray, actions: np.ndarray,
               n_actions: int | None, layout: dict, where: str, first: int = 0) -> None:
    """The conventions of one key over a block of episodes ``first, first + 1, ...``
    (``filled`` and ``actions`` are those episodes' rows): zero padding, finite features, and
    for discrete actions the ids, availability and one-hot agreeing with each other."""
    filled_b = filled[..., 0].astype(bool)
    n_episodes, n_steps = filled_b.shape
    padding = np.arange(n_steps)[None, :] >= filled_b.sum(1)[:, None]
    flat = block.reshape(n_episodes, n_steps, -1)

    def fail(name: str, bad: np.ndarray, what: str) -> None:
        _fail(where, name, bad, what, first)

    if key in ("obs", "state") and not np.isfinite(flat).all():
        fail(key, ~np.isfinite(flat).all(-1), f"{key} is not finite")
    if key in ("obs", "state") and layout.get("family") in envs.FAMILIES:
        problem = envs.FAMILIES[layout["family"]].check_values(layout["map_name"], key, block)
        if problem is not None:
            fail(key, problem[0].reshape(n_episodes, n_steps, -1).any(-1), problem[1])
    if padding.any():
        nonzero = (flat != 0).any(-1) & padding
        if nonzero.any():
            fail(key, nonzero, "steps after the post-terminal step (padding) must be 0")
    if layout.get("action_type", "discrete") != "discrete":
        if key == "actions" and not np.isfinite(block).all():
            fail("actions", ~np.isfinite(block).all(-1).all(-1), "not finite")
        return
    ids = actions[..., 0]
    if key == "actions":
        out_of_range = ((ids < 0) | (ids >= n_actions)).any(-1) & filled_b
        if out_of_range.any():
            fail("actions", out_of_range, f"action ids must be in 0..{n_actions - 1}")
    elif key == "avail_actions":
        if not np.isin(block, (0, 1)).all():
            fail(key, ~np.isin(block, (0, 1)).all(-1), "must be 0 or 1")
        none_avail = (~block.any(-1)).any(-1) & filled_b  # every agent needs an action
        if none_avail.any():
            fail(key, none_avail, "an agent has no available action")
        chosen = np.take_along_axis(block, np.clip(ids, 0, n_actions - 1)[..., None], -1)
        unavailable = (chosen[..., 0] == 0).any(-1) & filled_b
        if unavailable.any():
            fail("actions", unavailable, "an agent's action is not in its avail_actions")
    elif key == "actions_onehot":
        expect = np.eye(n_actions, dtype=np.float32)[np.clip(ids, 0, n_actions - 1)]
        wrong = (block != expect).any(-1).any(-1) & filled_b
        if wrong.any():
            fail(key, wrong, "actions_onehot must be the one-hot of actions")


# ----------------------------------------------------------------------------------- checksum
class Digests:
    """The digests of ``compute_checksums``, fed key by key in sorted order and, within a key,
    block by block along the first axis (C order makes the blocks' bytes the array's bytes)."""

    def __init__(self):
        self.total = hashlib.sha256()
        self.per_key: dict[str, str] = {}

    @staticmethod
    def _little(dtype: np.dtype) -> np.dtype:
        return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype

    def start(self, key: str, dtype: np.dtype, shape: Iterable[int]) -> None:
        header = f"{key}:{self._little(np.dtype(dtype)).str}:{list(shape)}\n".encode()
        self.key, self.one = key, hashlib.sha256(header)
        self.total.update(header)

    def update(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self._little(block.dtype))
        data = memoryview(block.reshape(-1).view(np.uint8)) if block.size else b""
        self.one.update(data)
        self.total.update(data)

    def finish(self) -> None:
        self.per_key[self.key] = "sha256:" + self.one.hexdigest()

    def add_attributes(self, attrs: dict) -> None:
        """Schema 2: the attributes that change what the data mean (``MEANING_ATTRS``), as
        canonical JSON after every array, under the name ``attributes``."""
        text = json.dumps({k: attrs.get(k) for k in MEANING_ATTRS}, sort_keys=True).encode()
        self.total.update(b"attributes\n" + text)
        self.per_key["attributes"] = "sha256:" + hashlib.sha256(text).hexdigest()

    def result(self) -> tuple[str, dict[str, str]]:
        return "sha256:" + self.total.hexdigest(), self.per_key


def compute_checksums(arrays: dict[str, np.ndarray],
                      attrs: dict | None = None) -> tuple[str, dict[str, str]]:
    """``("sha256:<hex>", {key: "sha256:<hex>"})`` over ``arrays`` in sorted key order: for each
    key ``"<key>:<dtype>:<shape>\\n"`` then its little-endian C-order bytes; then, given
    ``attrs`` (schema 2), the attributes that change the data's meaning."""
    digests = Digests()
    for key in sorted(arrays):
        arr = np.asarray(arrays[key])
        digests.start(key, arr.dtype, arr.shape)
        digests.update(arr)
        digests.finish()
    if attrs is not None:
        digests.add_attributes(attrs)
    return digests.result()
