"""Checkpoints hold only tensors and plain values: a crafted pickle runs no code anywhere."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from marl.checkpoint import CheckpointError, atomic_save, load
from marl.cli import main


class Payload:
    """Unpickling this runs a shell command that creates ``marker`` (what an attacker would do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def craft(real: dict, path, marker) -> None:
    """A real checkpoint with one extra entry that runs code when unpickled."""
    torch.save(dict(real, notes=Payload(marker)), path)


def test_the_payload_would_run_under_an_unrestricted_load(tmp_path):
    """Guards the test itself: the payload really executes code under plain unpickling."""
    import pickle

    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def test_a_crafted_checkpoint_is_refused_in_one_line_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    craft({"update": 1, "model": {"w": torch.ones(2)}}, tmp_path / "bad.pt", marker)
    with pytest.raises(CheckpointError) as err:
        load(tmp_path / "bad.pt")
    message = str(err.value)
    assert "refused" in message and str(tmp_path / "bad.pt") in message and "\n" not in message
    assert not marker.exists()


def test_plain_checkpoints_round_trip_and_bad_files_are_one_error(tmp_path):
    state = {"version": 1, "model": {"w": torch.arange(3.0)}, "update": 7, "best_score": None,
             "tasks": ["smac:3m"], "generators": [torch.Generator().get_state()]}
    atomic_save(state, tmp_path / "ok.pt")
    back = load(tmp_path / "ok.pt")
    assert back["update"] == 7 and back["tasks"] == ["smac:3m"] and back["best_score"] is None
    assert torch.equal(back["model"]["w"], torch.arange(3.0))
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt: not a readable checkpoint"):
        load(tmp_path / "junk.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a dict"):
        load(tmp_path / "list.pt")


def test_a_failed_atomic_save_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"update": 1}, path)
    with pytest.raises(Exception):
        atomic_save({"update": 2, "fn": lambda: None}, path)  # lambdas cannot be pickled
    assert load(path)["update"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_every_command_that_reads_a_run_refuses_a_crafted_checkpoint(tiny_run, tmp_path, capsys):
    marker = tmp_path / "ran"
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    craft(load(tiny_run / "checkpoints" / "last.pt"), run / "checkpoints" / "last.pt", marker)
    commands = [
        ["evaluate", str(run), "--tasks", "smac:3m", "--episodes", "2", "--workers", "1"],
        ["visualize", str(run), "--task", "smac:3m", "--episodes", "1"],
        ["train", "--resume", str(run), "updates=5"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert "refused" in err and len(err.splitlines()) == 1, (argv, err)
    assert not marker.exists()


def test_behaviour_training_refuses_a_crafted_checkpoint(tmp_path, capsys):
    marker = tmp_path / "ran"
    out = tmp_path / "behavior"
    out.mkdir()
    craft({"config": {"task": "smac:3m", "hidden": 64}}, out / "checkpoint.pt", marker)
    assert main(["behavior", "train", "smac:3m", "--out", str(out), "--steps", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert "refused" in err and len(err.splitlines()) == 1
    assert not marker.exists()
