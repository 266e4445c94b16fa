"""How well can any function of the global state predict a dataset's Monte-Carlo returns?

    python experiments/value_ceiling.py datasets/data/smac_3m+enemy_reaction=0.8/medium-replay.h5 [...]

``marl diagnose`` gates HiSSD's team value on its correlation with the discounted return-to-go
of single episodes. Where the outcome of a battle is a coin flip given the state, no value can
reach a high correlation on episodes it has not memorised. This script measures that ceiling:
gradient-boosted trees (scikit-learn) fitted on the global state and the time step of 80 % of a
file's episodes predict the return-to-go (gamma 0.99, rewards x 0.1, as HiSSD's value) of the
other 20 %. It prints, per file, the held-out and in-sample correlations and the correlation of
the return-to-go with the episode's outcome.
"""

from __future__ import annotations

import argparse

import h5py
import numpy as np


def returns_to_go(reward: np.ndarray, filled: np.ndarray, gamma: float) -> np.ndarray:
    out, acc = np.zeros_like(reward), np.zeros(len(reward))
    for t in reversed(range(reward.shape[1])):  # one pass over time, batched over episodes
        acc = (reward[:, t] + gamma * acc) * filled[:, t]
        out[:, t] = acc
    return out


def ceiling(path: str, gamma: float = 0.99, scale: float = 0.1, seed: int = 0) -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor

    with h5py.File(path, "r") as f:
        state, won = f["state"][:], f["battle_won"][:].astype(bool)
        reward, filled = f["reward"][:, :, 0], f["filled"][:, :, 0].astype(np.float32)
    g = returns_to_go(reward, filled, gamma) * scale
    n_transitions = filled.sum(1).astype(int) - 1  # steps with a successor, as HiSSD's value
    steps = np.arange(state.shape[1])
    real = steps[None, :] < n_transitions[:, None]
    held_out = np.zeros(len(state), bool)
    held_out[np.random.default_rng(seed).permutation(len(state))[: len(state) // 5]] = True
    time = np.broadcast_to(steps[None, :, None] / state.shape[1], (*state.shape[:2], 1))
    x = np.concatenate([state, time], -1)

    def rows(episodes):
        keep = real & episodes[:, None]
        return x[keep], g[keep], np.broadcast_to(won[:, None], real.shape)[keep]

    x_fit, g_fit, _ = rows(~held_out)
    x_test, g_test, won_test = rows(held_out)
    model = HistGradientBoostingRegressor(max_iter=500, learning_rate=0.05, random_state=seed)
    model.fit(x_fit, g_fit)
    return {"file": path, "episodes": len(state), "win_rate": float(won.mean()),
            "corr_held_out": float(np.corrcoef(model.predict(x_test), g_test)[0, 1]),
            "corr_in_sample": float(np.corrcoef(model.predict(x_fit), g_fit)[0, 1]),
            "corr_return_won": float(np.corrcoef(g_test, won_test)[0, 1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", help="marl HDF5 datasets of the SMAC family")
    args = p.parse_args()
    for path in args.files:
        r = ceiling(path)
        print(f"{r['file']}: {r['episodes']} episodes, win rate {r['win_rate']:.2f}; "
              f"corr(trees, return-to-go) held-out {r['corr_held_out']:.2f}, in-sample "
              f"{r['corr_in_sample']:.2f}; corr(return-to-go, won) {r['corr_return_won']:.2f}")


if __name__ == "__main__":
    main()
