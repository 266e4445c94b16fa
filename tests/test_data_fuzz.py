"""Mutations of a small real dataset file, each kind a user or a disk can make: every one ends
in a verdict, never a traceback, and every one that changes what the file holds or means fails
verification (``marl datasets inspect`` exits 1 or refuses the file in one line)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from envs.core import UserError
from marl.data.card import inspect_dataset
from marl.data.format import read_dataset
from marl.data.schema import MEANING_ATTRS

from helpers import write_random

KEYS = ("obs", "state", "actions", "actions_onehot", "avail_actions", "reward", "terminated",
        "filled", "battle_won")


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    path = write_random(tmp_path_factory.mktemp("fuzz") / "3m.h5", "smac:3m", episodes=6,
                        seed=3, quality="medium")
    return path, read_dataset(path)


def _outcome(path):
    """The problem that verification reports (None: the file verifies); anything but a user
    error propagates and fails the test."""
    try:
        return inspect_dataset(path)[1]
    except UserError as exc:  # not even readable unverified: one line, no card
        return str(exc)


def _mutants(rng):
    for key in KEYS:
        for i in range(3):
            yield f"value:{key}:{i}", ("value", key)
        yield f"delete:{key}", ("delete", key)
    for name in MEANING_ATTRS:
        yield f"rewrite:{name}", ("rewrite", name)
    for name in ("checksum", "checksums", "schema_version", "task", "layout", "quality",
                 "env_options", "backend"):
        yield f"drop:{name}", ("drop", name)
    for i in range(150):
        yield f"byte:{i}", ("byte", int(rng.integers(1 << 31)))


REWRITES = {"task": "smac:4m", "family": "mpe", "backend": "sc2", "quality": "expert",
            "env_options": '{"enemy_reaction": 0.5}', "layout": '{"n_agents": 3}'}


def _mutate(path, kind, arg, rng):
    with h5py.File(path, "r+") as f:
        if kind == "value":
            data = f[arg][...]
            flat = data.reshape(-1)
            j = int(rng.integers(flat.size))
            flat[j] = 1 - flat[j] if data.dtype.kind in "iub" and flat[j] in (0, 1) else flat[j] + 1
            f[arg][...] = data
        elif kind == "delete":
            del f[arg]
        elif kind == "rewrite":
            f.attrs[arg] = REWRITES[arg]
        elif kind == "drop":
            del f.attrs[arg]
    if kind == "byte":
        raw = bytearray(path.read_bytes())
        k = arg % len(raw)
        raw[k] ^= 0xFF
        path.write_bytes(bytes(raw))


def test_two_hundred_mutants_end_in_a_verdict_and_changed_files_fail(original, tmp_path):
    source, intact = original
    rng = np.random.default_rng(0)
    caught = passed_unchanged = 0
    mutants = list(_mutants(rng))
    assert len(mutants) >= 200
    for name, (kind, arg) in mutants:
        path = tmp_path / "mutant.h5"
        shutil.copy(source, path)
        _mutate(path, kind, arg, rng)
        problem = _outcome(path)  # a traceback here fails the test
        if problem is not None:
            caught += 1
            continue
        # it verifies: only a change that touches neither the data nor their meaning may
        assert kind == "byte", f"{name} changed the file but it still verifies"
        again = read_dataset(path)
        for key, value in intact.arrays.items():
            np.testing.assert_array_equal(again.arrays[key], value, err_msg=name)
        assert {k: again.attrs.get(k) for k in MEANING_ATTRS} == \
            {k: intact.attrs.get(k) for k in MEANING_ATTRS}, name
        passed_unchanged += 1
    print(f"{len(mutants)} mutants: {caught} caught, {passed_unchanged} byte flips changed nothing")
    assert caught >= 60, (caught, passed_unchanged)  # every non-byte mutant, and many flips
