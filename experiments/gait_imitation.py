"""Can a policy of observations imitate a dataset's behaviour policy? Fits an MLP from each
agent's observation (and a one-hot agent id) to its action, on a MuJoCo dataset file, then
plays the MLP greedily on the file's task. A near-perfect fit that plays far below the data
says the behaviour policy is not one a learner of observations can reproduce (the clocked
swimming wave: docs/datasets.md).

    python experiments/gait_imitation.py datasets/data/mamujoco_ManySegmentSwimmer-3x2/expert.h5 \
        [--episodes 100] [--steps 3000] [--play 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

import envs
from marl.data.format import read_dataset


def fit_and_play(path: str, episodes: int = 100, steps: int = 3000, play: int = 16,
                 seed: int = 0) -> dict:
    """The fit's mean squared error and the actions' variance on the file's first ``episodes``
    episodes, and the MLP's mean return over ``play`` greedy episodes."""
    torch.manual_seed(seed)
    data = read_dataset(path)
    task = data.attrs["task"]
    if not task.startswith("mamujoco:"):
        raise SystemExit(f"{path}: a MuJoCo dataset (continuous joint actions) is needed, not {task}")
    obs, actions = data.arrays["obs"][:episodes, :-1], data.arrays["actions"][:episodes, :-1]
    filled = data.arrays["filled"][:episodes, :-1, 0].astype(bool)
    n_agents = obs.shape[2]
    ids = np.broadcast_to(np.eye(n_agents, dtype=np.float32), obs.shape[:3] + (n_agents,))
    x = torch.from_numpy(np.concatenate([obs, ids], -1)[filled].reshape(-1, obs.shape[-1] + n_agents))
    y = torch.from_numpy(np.ascontiguousarray(actions[filled]).reshape(-1, actions.shape[-1]))
    mean, std = x.mean(0), x.std(0) + 1e-6
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(),
                              torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, y.shape[1]))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(steps):
        batch = torch.randint(len(x), (1024,))
        loss = ((net((x[batch] - mean) / std) - y[batch]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = float(((net((x - mean) / std) - y) ** 2).mean())
    eye = torch.eye(n_agents)

    def choose(ts):
        o = torch.as_tensor(ts.obs, dtype=torch.float32)
        with torch.no_grad():
            out = net((torch.cat([o, eye.expand(len(o), -1, -1)], -1) - mean) / std)
        return np.clip(out.numpy(), -1.0, 1.0)

    env = envs.make(task, num_envs=play, seed=seed + 100)
    returns = envs.play(env, choose, seed=seed + 100).returns
    env.close()
    return {"task": task, "episodes_fitted": int(len(obs)), "fit_mse": mse,
            "action_variance": float(y.var(0).mean()), "data_return": float(data.returns[:episodes].mean()),
            "mlp_return": float(returns.mean()), "mlp_return_std": float(returns.std())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--episodes", type=int, default=100, help="episodes fitted")
    parser.add_argument("--steps", type=int, default=3000, help="Adam steps of 1024 transitions")
    parser.add_argument("--play", type=int, default=16, help="greedy episodes played")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    print(json.dumps(fit_and_play(args.dataset, args.episodes, args.steps, args.play, args.seed), indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
