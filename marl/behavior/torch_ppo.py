"""The torch behaviour trainer: shared-parameter MAPPO on the host, for MPE and MuJoCo (and SMAC
where ``--engine torch`` is asked for).

``marl behavior train TASK --out DIR`` logs to TensorBoard (``DIR/tb``), writes a snapshot every
``snapshot_every`` updates with its measured greedy and sampled win rate / return
(``DIR/snapshots/NNNNNN.safetensors`` + ``.json``), and keeps ``DIR/checkpoint.pt`` (atomic) so
that re-running the same command resumes.

PPO as CleanRL writes it, with the settings that learned on SMAX on a 2-core CPU
(``docs/datasets.md``): 64 envs x 128 steps, 4 epochs x 4 minibatches, Adam 5e-4, clip 0.2,
entropy 0.01, GAE 0.99/0.95, grad-norm 0.5, dead agents masked out of the actor loss, time-limit
truncation bootstrapped with V(final state), rewards scaled by ``reward_scale``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import envs
from marl.behavior.policy import (BehaviorConfig, EntityCritic, act, evaluate, family_adapter,
                                  learning_rate, make_actor, policy, read_checkpoint,
                                  save_snapshot)
from marl.checkpoint import atomic_save


def train(cfg: BehaviorConfig, out: str | Path, log=print) -> dict:
    """Train (or resume) a behaviour policy with the torch trainer; returns the last snapshot's
    metadata."""
    # Long on purpose: the PPO loop (rollout, GAE, epochs, snapshots) reads top to bottom, as in
    # CleanRL.
    out = Path(out)
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # tiny early gradients otherwise double the update time
    env = envs.make(cfg.task, num_envs=cfg.num_envs, seed=cfg.seed, **(cfg.env_options or {}))
    info, fam = env.info, family_adapter(env.info)
    actor = make_actor(info, cfg.hidden)
    critic = EntityCritic(fam.dims[3], fam.dims[4], cfg.hidden)
    params = list(actor.parameters()) + list(critic.parameters())
    optim = torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)
    gen = torch.Generator().manual_seed(cfg.seed)
    update, env_steps, snapshot_meta = 0, 0, {}
    ckpt_path = out / "checkpoint.pt"
    ckpt = read_checkpoint(ckpt_path, cfg)
    if ckpt is not None:
        actor.load_state_dict(ckpt["actor"]), critic.load_state_dict(ckpt["critic"])
        optim.load_state_dict(ckpt["optim"]), gen.set_state(ckpt["generator"])
        update, env_steps = ckpt["update"], ckpt["env_steps"]
        log(f"resuming {cfg.task} from update {update} ({env_steps:,} env steps)")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb"))
    T, N = cfg.rollout_steps, cfg.num_envs
    discrete = info.action_type == "discrete"
    ts = env.reset(seed=cfg.seed + 1000 * update)  # a resumed run starts fresh battles
    finished: list[tuple[float, bool]] = []
    start, start_steps = time.perf_counter(), env_steps
    while env_steps < cfg.total_env_steps:
        for group in optim.param_groups:
            group["lr"] = learning_rate(cfg, env_steps)
        buf = {k: [] for k in ("obs", "state", "actions", "logp", "reward", "done", "truncated",
                                 "final_obs", "final_state") + (("avail",) if discrete else ())}
        for _ in range(T):
            actions, logp = act(actor, fam, ts.obs, ts.avail_actions, greedy=False, generator=gen)
            buf["obs"].append(ts.obs), buf["state"].append(ts.state)
            if discrete:
                buf["avail"].append(ts.avail_actions)
            buf["actions"].append(actions), buf["logp"].append(logp.numpy())
            ts = env.step(actions)
            buf["reward"].append(ts.reward * cfg.reward_scale), buf["done"].append(ts.done)
            buf["truncated"].append(ts.truncated)
            buf["final_obs"].append(ts.info["final_obs"]), buf["final_state"].append(ts.info["final_state"])
            if ts.done.any():
                won = ts.info.get("battle_won", np.zeros(N, bool))
                finished += list(zip(ts.info["episode_return"][ts.done].tolist(), won[ts.done].tolist()))
        env_steps += T * N
        b = {k: torch.from_numpy(np.stack(v)) for k, v in buf.items()}  # [T, N, ...]
        with torch.no_grad():
            tokens = fam.critic_tokens(b["state"].flatten(0, 1), b["obs"].flatten(0, 1))
            values = critic(*tokens).reshape(T, N)
            last_value = critic(*fam.critic_tokens(torch.from_numpy(ts.state), torch.from_numpy(ts.obs)))
            # a time limit is not an end: bootstrap from the state the episode was cut at
            final_values = critic(*fam.critic_tokens(b["final_state"].flatten(0, 1),
                                                     b["final_obs"].flatten(0, 1))).reshape(T, N)
            reward = b["reward"] + cfg.gamma * final_values * b["truncated"]
            adv, gae = torch.zeros(T, N), torch.zeros(N)
            for t in reversed(range(T)):
                next_value = last_value if t == T - 1 else values[t + 1]
                nonterminal = 1.0 - b["done"][t].float()
                delta = reward[t] + cfg.gamma * next_value * nonterminal - values[t]
                gae = delta + cfg.gamma * cfg.gae_lambda * nonterminal * gae
                adv[t] = gae
            returns = adv + values
        # flatten time and envs: one sample = one battle step with all its agents
        obs, state = b["obs"].flatten(0, 1), b["state"].flatten(0, 1)
        actions, old_logp = b["actions"].flatten(0, 1), b["logp"].flatten(0, 1)
        avail = b["avail"].flatten(0, 1) if discrete else None
        adv, returns = adv.flatten(), returns.flatten()
        # an agent with only no-op available is dead: nothing to learn from its steps
        alive = avail[..., 1:].any(-1).float() if discrete else torch.ones(old_logp.shape)
        stats = []
        for _ in range(cfg.epochs):
            order = torch.randperm(T * N, generator=gen)
            for idx in order.chunk(cfg.minibatches):
                dist = policy(actor, fam, obs[idx], avail[idx] if discrete else None)
                logp, entropy = dist.log_prob(actions[idx]), dist.entropy()
                a = adv[idx]
                a = ((a - a.mean()) / (a.std() + 1e-8))[:, None]
                ratio = (logp - old_logp[idx]).exp()
                surrogate = torch.min(ratio * a, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * a)
                m = alive[idx]
                policy_loss = -(surrogate * m).sum() / m.sum().clamp(min=1)
                entropy_mean = (entropy * m).sum() / m.sum().clamp(min=1)
                value = critic(*fam.critic_tokens(state[idx], obs[idx]))
                value_loss = F.mse_loss(value, returns[idx])
                loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy_mean
                optim.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optim.step()
                stats.append((policy_loss.item(), value_loss.item(), entropy_mean.item()))
        update += 1
        recent = finished[-500:]
        p, v, e = np.mean(stats, axis=0)
        rate = (env_steps - start_steps) / max(time.perf_counter() - start, 1e-9)
        for name, value in (("loss/policy", p), ("loss/value", v), ("policy/entropy", e),
                            ("optim/lr", optim.param_groups[0]["lr"]),
                            ("rollout/return", np.mean([r for r, _ in recent]) if recent else 0.0),
                            ("rollout/win_rate", np.mean([w for _, w in recent]) if recent else 0.0),
                            ("speed/env_steps_per_s", rate)):
            writer.add_scalar(name, value, env_steps)
        if update % cfg.snapshot_every == 0 or env_steps >= cfg.total_env_steps:
            greedy = evaluate(actor, cfg.task, cfg.eval_episodes, True, cfg.seed + 7, env_options=cfg.env_options)
            sampled = evaluate(actor, cfg.task, cfg.eval_episodes, False, cfg.seed + 7, env_options=cfg.env_options)
            snapshot_meta = {"task": cfg.task, "update": update, "env_steps": env_steps,
                             "greedy": greedy, "sampled": sampled, "config": asdict(cfg),
                             "env_options": info.options}
            save_snapshot(actor.state_dict(), out / "snapshots" / f"{update:06d}.safetensors", snapshot_meta)
            for kind, result in (("greedy", greedy), ("sampled", sampled)):
                for key, value in result.items():
                    writer.add_scalar(f"eval_{kind}/{key}", value, env_steps)
            log(f"{cfg.task} update {update} env steps {env_steps:,} ({rate:,.0f}/s) "
                f"greedy {greedy} sampled {sampled} entropy {e:.3f}")
            atomic_save({"config": asdict(cfg), "actor": actor.state_dict(),
                                "critic": critic.state_dict(), "optim": optim.state_dict(),
                                "generator": gen.get_state(), "update": update,
                                "env_steps": env_steps}, ckpt_path)
        writer.flush()
    writer.close()
    return snapshot_meta
