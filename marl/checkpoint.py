"""Checkpoint files: written atomically, read without running code.

A checkpoint (``marl train``'s ``last.pt``/``best.pt``, ``marl behavior train``'s
``checkpoint.pt``) holds only tensors and plain Python values (dicts, lists, numbers, strings),
so it is read with ``torch.load(weights_only=True)``: torch's restricted unpickler, which builds
those types and refuses every other global. A crafted pickle therefore cannot execute code on
load; it is refused with one ``CheckpointError`` line naming the file. Runs and policies are
what researchers share, so nothing here trusts the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from envs.core import UserError


class CheckpointError(UserError):
    """A checkpoint that is missing, damaged, or holds more than tensors and plain values."""


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before the rename (hidden, per process)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary name, then rename: a kill leaves the old file whole."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = temporary_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load(path: Path, map_location: str = "cpu") -> dict:
    """A checkpoint's contents, read with torch's weights-only unpickler (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch's messages span many lines: keep the one that says why
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        refused = [line for line in lines if "GLOBAL" in line or "global" in line.split()]
        if refused:
            raise CheckpointError(f"{path}: refused, it holds objects other than tensors and "
                                  f"plain values, which could run code ({refused[0]})") from None
        why = next((line.split("error:")[-1].strip() for line in lines if "Unsupported" in line
                    or "error:" in line and line.split("error:")[-1].strip()), None)
        why = why or (lines[0] if lines else type(exc).__name__)
        raise CheckpointError(f"{path}: not a readable checkpoint ({why})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a marl checkpoint (a {type(obj).__name__}, "
                              "expected a dict)")
    return obj
