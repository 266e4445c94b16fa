"""Environment throughput benchmark (JSON output). Run it alone: a second heavy job on 2 cores
slows both several-fold, so the load average is recorded with the results.

    python experiments/bench/envs.py [--num-envs 64] [--steps 300] [--out FILE]

Measures, with random available actions chosen in numpy (the pattern a torch learner uses):
* SMAC on SMAX through marl's adapter (SMAC-layout vectors, SMAC reward, auto-reset) against
  raw jaxmarl SMAX stepping (its own jit(vmap(step)) with auto-reset, stacked outputs) in the
  same run; the adapter's overhead is ``1 - adapter / raw``.
* SMAX compile time per map, cold (empty on-disk cache) and warm (second process, same cache).
* Multi-agent MuJoCo against raw single-agent Gymnasium, and MPE, where those are installed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Explicit threading: XLA's CPU client and numpy/BLAS each get one intra-op thread so that
# numbers do not depend on what else the 2 cores are doing inside this process.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# This file is called envs.py: keep its own folder off the path so `import envs` finds marl's.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO))


def _timed_rate(step, first_avail, num_envs: int, steps: int, seed: int = 0) -> float:
    """env-steps/s of ``step(actions) -> avail`` after two warm-up calls."""
    from envs.core import random_actions

    rng = np.random.default_rng(seed)
    avail = first_avail
    for _ in range(2):
        avail = step(random_actions(avail, rng))
    start = time.perf_counter()
    for _ in range(steps):
        avail = step(random_actions(avail, rng))
    return steps * num_envs / (time.perf_counter() - start)


def adapter_rate(map_name: str, num_envs: int, steps: int) -> float:
    import envs

    env = envs.make(f"smac:{map_name}", num_envs=num_envs, seed=0)
    return _timed_rate(lambda a: env.step(a).avail_actions, env.reset().avail_actions, num_envs, steps)


def raw_smax_rate(map_name: str, num_envs: int, steps: int) -> float:
    """jaxmarl's own batched stepping with the same scenario and settings as marl's adapter."""
    import jax
    import jax.numpy as jnp

    from envs.smac import parse_map
    from envs.smax import _program

    lay = parse_map(map_name)
    sim = _program(map_name, "closest", lay.episode_limit).sim
    agents = sim.agents

    @jax.jit
    def step(key, state, actions):
        key, sub = jax.random.split(key)
        obs, state, rew, dones, _ = jax.vmap(sim.step)(
            jax.random.split(sub, num_envs), state, {a: actions[:, i] for i, a in enumerate(agents)})
        avail = jax.vmap(sim.get_avail_actions)(state)
        return (key, state, jnp.stack([obs[a] for a in agents], 1), obs["world_state"],
                jnp.stack([avail[a] for a in agents], 1), rew[agents[0]], dones["__all__"])

    key = jax.random.PRNGKey(0)
    _, state = jax.vmap(sim.reset)(jax.random.split(key, num_envs))
    avail0 = np.stack([np.asarray(v) for v in jax.vmap(sim.get_avail_actions)(state).values()], 1)
    holder = {"key": key, "state": state}

    def host_step(actions):
        out = step(holder["key"], holder["state"], jnp.asarray(actions, jnp.int32))
        holder["key"], holder["state"] = out[0], out[1]
        arrays = [np.asarray(x) for x in out[2:]]
        return arrays[2].astype(bool)

    return _timed_rate(host_step, avail0.astype(bool), num_envs, steps)


def compile_seconds(map_name: str, num_envs: int, cache_dir: str) -> float:
    """Build + first step of a map (imports excluded) in a fresh process using ``cache_dir`` as
    JAX's disk cache: with an empty cache this is compilation, with a warm one a cache hit."""
    code = (
        "import contextlib, io, time, numpy as np, envs, jax\n"
        "from envs.core import random_actions\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    import jaxmarl.environments.smax\n"
        "t = time.perf_counter()\n"
        f"env = envs.make('smac:{map_name}', num_envs={num_envs})\n"
        "env.step(random_actions(env.reset().avail_actions, np.random.default_rng(0)))\n"
        "print(time.perf_counter() - t)\n"
    )
    env = dict(os.environ, MARL_JAX_CACHE=cache_dir)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--maps", default="3m,12m,5m_vs_6m,2s3z,3s5z")
    parser.add_argument("--out", default=str(REPO / "experiments/bench/results/envs.json"))
    args = parser.parse_args()

    results = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "loadavg_before": os.getloadavg(), "xla_flags": os.environ["XLA_FLAGS"]},
        "num_envs": args.num_envs, "steps": args.steps, "smac": {}, "mamujoco": {}, "mpe": {},
    }
    for map_name in args.maps.split(","):
        with tempfile.TemporaryDirectory() as cache:
            cold = compile_seconds(map_name, args.num_envs, cache)
            warm = compile_seconds(map_name, args.num_envs, cache)
        adapter = adapter_rate(map_name, args.num_envs, args.steps)
        raw = raw_smax_rate(map_name, args.num_envs, args.steps)
        results["smac"][map_name] = {
            "adapter_env_steps_per_s": round(adapter), "raw_smax_env_steps_per_s": round(raw),
            "adapter_overhead": round(1 - adapter / raw, 3),
            "build_and_first_step_s_cold_cache": round(cold, 2),
            "build_and_first_step_s_warm_cache": round(warm, 2),
        }
        print(map_name, results["smac"][map_name], flush=True)

    try:
        from envs.mamujoco import bench_mamujoco
    except ImportError as err:
        results["mamujoco"] = {"skipped": str(err)}
    else:
        results["mamujoco"] = bench_mamujoco(["HalfCheetah-2x3", "Ant-4x2"], num_envs=8, steps=300)
        print("mamujoco", results["mamujoco"], flush=True)

    import envs

    for task in ("mpe:spread-3", "mpe:spread-5"):
        env = envs.make(task, num_envs=8, seed=0)
        rate = _timed_rate(lambda a: env.step(a).avail_actions, env.reset().avail_actions, 8, args.steps)
        results["mpe"][task] = {"env_steps_per_s": round(rate), "num_envs": 8}
        print(task, results["mpe"][task], flush=True)

    results["machine"]["loadavg_after"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)  # atomic: a killed run never leaves a half-written file
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
