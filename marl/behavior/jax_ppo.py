"""Behaviour policies for SMAC maps at simulator speed: MAPPO (or IPPO) compiled with SMAX.

``marl behavior train smac:MAP`` runs here (``--engine jax``, the default for SMAC). One XLA
program plays ``num_envs`` SMAX battles for ``rollout_steps`` steps with the current policy,
computes the advantages and runs the PPO epochs; the host only logs, evaluates snapshots and
writes checkpoints between programs. The simulator program is ``envs.smax``'s own
(``_SmaxProgram._reset_batch/_step_batch``), so training plays exactly the battles that
``marl collect`` and ``marl evaluate`` play.

The networks are the entity networks of :mod:`marl.behavior`, written as functions of a flat
parameter dict whose names and shapes are those of the torch modules' ``state_dict``: a snapshot
is the same safetensors file the torch trainer writes and loads into
:class:`marl.behavior.policy.EntityActor` unchanged, so collection, export and data qualities work as
before. Observations become entity tokens as :func:`marl.entity.smac.parse_smac_obs` makes
them (``tests/test_behavior_jax.py`` checks that tokens, logits and actions agree).

* ``mappo``: one centralised value V(s) per battle from the state tokens (team reward).
* ``ippo``: one value V(o_i) per agent from its own observation tokens.
* ``recurrent``: a GRU cell (torch's ``nn.GRUCell``) on the actor's context, trained through
  time over whole rollouts.

The same compiled step serves collection (:class:`Recorder`: ``marl collect`` on SMAX) and,
with ``record_replay``, keeps the training rollouts as medium-replay data (:class:`Replay`).

PPO is the torch trainer's (``marl.behavior`` docstring); a checkpoint holds the whole
training state (parameters, optimiser, the battles in progress and the random keys), so a
resumed run continues exactly where an uninterrupted one would be.

Why this file is long (about 770 lines): as CleanRL's single-file trainers, it reads top to
bottom as one algorithm: the entity tokens and networks in JAX (the torch actor's twins), the
rollout, GAE and PPO update compiled with SMAX, the compiled recorder that collection uses, and
the replay of training rollouts; splitting it would scatter what must agree with itself.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from envs.core import EnvError
from envs.smac import N_ACTIONS_NO_ATTACK, N_MOVE_FEATS
from marl.behavior.policy import BehaviorConfig, learning_rate, read_checkpoint, save_snapshot
from marl.checkpoint import atomic_save
from marl.entity import smac as ent

ALGOS = ("mappo", "ippo")


# ---------------------------------------------------------------------------- entity tokens
class Tokens:
    """SMAC vectors of one map -> canonical entity tokens, in JAX (``marl.entity.smac``'s
    features, built from its index tables)."""

    def __init__(self, layout):
        import jax.numpy as jnp

        self.lay, self.t = layout, ent._tables(layout)
        self.enemy_types = jnp.asarray(self.t.enemy_types.numpy())
        self.ally_types = jnp.asarray(self.t.ally_types.numpy())

    @staticmethod
    def _types(bits, matrix, present):
        import jax.numpy as jnp

        if bits.shape[-1]:
            return bits @ matrix
        return jnp.broadcast_to(matrix[0], present.shape + matrix.shape[-1:]) * present[..., None]

    @staticmethod
    def _unit(block, shield_bits):
        import jax.numpy as jnp

        health = block[..., 0]
        shield = block[..., 1] if shield_bits else jnp.zeros_like(health)
        return health, shield, block[..., 1 + shield_bits:]

    def obs(self, obs):
        """``obs [..., obs_dim]`` -> own [..., F_OWN], allies [..., A, F_ENTITY], enemies [..., E, F_ENTITY]."""
        import jax.numpy as jnp

        lay, t = self.lay, self.t
        n_a, n_e, batch = lay.n_agents, lay.n_enemies, obs.shape[:-1]
        enemy = obs[..., t.enemy_start:t.ally_start].reshape(*batch, n_e, lay.nf_en)
        e_health, e_shield, e_bits = self._unit(enemy[..., 4:], lay.shield_bits_enemy)
        e_visible = (e_health > 0).astype(obs.dtype)
        enemies = jnp.concatenate([e_visible[..., None], enemy[..., 0:4], e_health[..., None],
                                   e_shield[..., None], self._types(e_bits, self.enemy_types, e_visible)], -1)
        ally = obs[..., t.ally_start:t.own_start].reshape(*batch, n_a - 1, lay.nf_al)
        a_health, a_shield, a_bits = self._unit(ally[..., 4:], lay.shield_bits_ally)
        a_visible = ally[..., 0]
        allies = jnp.concatenate([a_visible[..., None], jnp.zeros_like(a_visible)[..., None], ally[..., 1:4],
                                  a_health[..., None], a_shield[..., None],
                                  self._types(a_bits, self.ally_types, a_visible)], -1)
        o_health, o_shield, o_bits = self._unit(obs[..., t.own_start:], lay.shield_bits_ally)
        alive = (o_health > 0).astype(obs.dtype)
        own = jnp.concatenate([o_health[..., None], o_shield[..., None],
                               self._types(o_bits, self.ally_types, alive), obs[..., :N_MOVE_FEATS]], -1)
        return own, allies, enemies

    def state(self, state):
        """``state [..., state_dim]`` -> ally [..., n_a, F_STATE] and enemy [..., n_e, F_STATE] tokens."""
        import jax.numpy as jnp

        lay, t = self.lay, self.t
        n_a, n_e, batch = lay.n_agents, lay.n_enemies, state.shape[:-1]
        ally = state[..., :t.state_enemy_start].reshape(*batch, n_a, lay.state_nf_al)
        a_health, a_shield, a_bits = self._unit(
            jnp.concatenate([ally[..., :1], ally[..., 4:]], -1), lay.shield_bits_ally)
        a_alive = (a_health > 0).astype(state.dtype)
        last = state[..., t.state_actions_start:].reshape(*batch, n_a, lay.n_actions)
        allies = jnp.concatenate([
            a_alive[..., None], a_health[..., None], a_shield[..., None], ally[..., 1:4],
            self._types(a_bits, self.ally_types, a_alive), last[..., :N_ACTIONS_NO_ATTACK],
            last[..., N_ACTIONS_NO_ATTACK:].sum(-1, keepdims=True)], -1)
        enemy = state[..., t.state_enemy_start:t.state_actions_start].reshape(*batch, n_e, lay.state_nf_en)
        e_health, e_shield, e_bits = self._unit(
            jnp.concatenate([enemy[..., :1], enemy[..., 3:]], -1), lay.shield_bits_enemy)
        e_alive = (e_health > 0).astype(state.dtype)
        attacked = (last[..., N_ACTIONS_NO_ATTACK:].sum(-2) > 0).astype(state.dtype)
        zeros = jnp.zeros_like(e_health)[..., None]
        enemies = jnp.concatenate([
            e_alive[..., None], e_health[..., None], e_shield[..., None], zeros, enemy[..., 1:3],
            self._types(e_bits, self.enemy_types, e_alive),
            jnp.broadcast_to(zeros, (*batch, n_e, N_ACTIONS_NO_ATTACK)), attacked[..., None]], -1)
        return allies, enemies


# ---------------------------------------------------------------------------- networks
# Parameters are flat dicts named as the torch modules' state_dict entries ("own.0.weight": [out, in]).
def _linear_init(key, n_in, n_out, name, gain=None):
    import jax

    kw, kb = jax.random.split(key)
    bound = 1.0 / np.sqrt(n_in)  # torch.nn.Linear's default
    if gain is None:
        weight = jax.random.uniform(kw, (n_out, n_in), minval=-bound, maxval=bound)
        bias = jax.random.uniform(kb, (n_out,), minval=-bound, maxval=bound)
    else:  # near-uniform first policy, as the torch actor's orthogonal(0.01) heads
        weight = jax.nn.initializers.orthogonal(gain)(kw, (n_out, n_in))
        bias = jax.numpy.zeros((n_out,))
    return {f"{name}.weight": weight, f"{name}.bias": bias}


def _mlp_init(key, n_in, hidden, name):
    import jax

    k0, k2 = jax.random.split(key)
    return {**_linear_init(k0, n_in, hidden, f"{name}.0"), **_linear_init(k2, hidden, hidden, f"{name}.2")}


def _linear(p, name, x):
    return x @ p[f"{name}.weight"].T + p[f"{name}.bias"]


def _mlp(p, name, x):
    import jax

    return jax.nn.relu(_linear(p, f"{name}.2", jax.nn.relu(_linear(p, f"{name}.0", x))))


def _pool(x):
    """Mean and max over the token axis (-2); zeros when there are no tokens."""
    import jax.numpy as jnp

    if x.shape[-2] == 0:
        return jnp.zeros(x.shape[:-2] + (2 * x.shape[-1],), x.dtype)
    return jnp.concatenate([x.mean(-2), x.max(-2)], -1)


def actor_init(key, hidden: int, value_head: bool = False, recurrent: bool = False) -> dict:
    """:class:`marl.behavior.policy.EntityActor`'s parameters (``value_head``: IPPO's V(o_i) instead
    of the action heads; ``recurrent``: a GRU cell, torch's ``nn.GRUCell``, on the context)."""
    import jax

    ks = jax.random.split(key, 7)
    p = {**_mlp_init(ks[0], ent.F_OWN, hidden, "own"), **_mlp_init(ks[1], ent.F_ENTITY, hidden, "ally"),
         **_mlp_init(ks[2], ent.F_ENTITY, hidden, "enemy"), **_mlp_init(ks[3], 5 * hidden, hidden, "body")}
    if value_head:
        return {**p, **_linear_init(ks[4], hidden, 1, "value")}
    if recurrent:
        bound = 1.0 / np.sqrt(hidden)  # torch.nn.GRUCell's default
        kg = jax.random.split(ks[6], 4)
        p.update({f"gru.{name}": jax.random.uniform(k, shape, minval=-bound, maxval=bound)
                  for k, (name, shape) in zip(kg, (("weight_ih", (3 * hidden, hidden)),
                                                   ("weight_hh", (3 * hidden, hidden)),
                                                   ("bias_ih", (3 * hidden,)), ("bias_hh", (3 * hidden,))))})
    return {**p, **_linear_init(ks[4], hidden, N_ACTIONS_NO_ATTACK, "own_head", gain=0.01),
            **_linear_init(ks[5], 2 * hidden, hidden, "target_head.0"),
            **_linear_init(jax.random.fold_in(ks[5], 1), hidden, 1, "target_head.2", gain=0.01)}


def _gru(p, x, h):
    """torch.nn.GRUCell: gates in the order reset, update, new."""
    import jax
    import jax.numpy as jnp

    gi = x @ p["gru.weight_ih"].T + p["gru.bias_ih"]
    gh = h @ p["gru.weight_hh"].T + p["gru.bias_hh"]
    (i_r, i_z, i_n), (h_r, h_z, h_n) = jnp.split(gi, 3, -1), jnp.split(gh, 3, -1)
    r, z = jax.nn.sigmoid(i_r + h_r), jax.nn.sigmoid(i_z + h_z)
    n = jnp.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


def _context(p, own, allies, enemies):
    import jax.numpy as jnp

    enemy = _mlp(p, "enemy", enemies)
    context = _mlp(p, "body", jnp.concatenate([_mlp(p, "own", own), _pool(_mlp(p, "ally", allies)),
                                               _pool(enemy)], -1))
    return context, enemy


def actor_logits(p, own, allies, enemies, h=None):
    """Logits [..., 6 + n_enemies] (own actions from the context, one attack per enemy token)
    and the recurrent state after this step (a recurrent actor's context is its GRU's output;
    a feed-forward actor hands ``h`` back unchanged)."""
    import jax
    import jax.numpy as jnp

    context, enemy = _context(p, own, allies, enemies)
    if "gru.weight_ih" in p:
        context = h = _gru(p, context, h)
    # target_head.0 acts on [enemy, context]: split its weight so that the context's half is
    # computed once per agent, not once per (agent, enemy) pair (the same function, less work)
    w, hidden = p["target_head.0.weight"], enemy.shape[-1]
    pair = enemy @ w[:, :hidden].T + (context @ w[:, hidden:].T + p["target_head.0.bias"])[..., None, :]
    target = _linear(p, "target_head.2", jax.nn.relu(pair))[..., 0]
    return jnp.concatenate([_linear(p, "own_head", context), target], -1), h


def agent_value(p, own, allies, enemies):
    """IPPO's V(o_i) [...]."""
    return _linear(p, "value", _context(p, own, allies, enemies)[0])[..., 0]


def critic_init(key, hidden: int) -> dict:
    """:class:`marl.behavior.EntityCritic`'s parameters (state tokens of allies and enemies)."""
    import jax

    ks = jax.random.split(key, 4)
    return {**_mlp_init(ks[0], ent.F_STATE, hidden, "a"), **_mlp_init(ks[1], ent.F_STATE, hidden, "b"),
            **_linear_init(ks[2], 4 * hidden, hidden, "head.0"), **_linear_init(ks[3], hidden, 1, "head.2")}


def state_value(p, allies, enemies):
    """MAPPO's V(s) [...]."""
    import jax
    import jax.numpy as jnp

    pooled = jnp.concatenate([_pool(_mlp(p, "a", allies)), _pool(_mlp(p, "b", enemies))], -1)
    return _linear(p, "head.2", jax.nn.relu(_linear(p, "head.0", pooled)))[..., 0]


def masked_log_probs(logits, avail):
    import jax
    import jax.numpy as jnp

    return jax.nn.log_softmax(jnp.where(avail, logits, jnp.finfo(logits.dtype).min), -1)


# ---------------------------------------------------------------------------- the compiled trainer
class Trainer:
    """The compiled programs of one run: ``init``, ``update`` (rollout + PPO) and ``evaluate``."""

    def __init__(self, cfg: BehaviorConfig, env):
        import jax
        import optax

        if cfg.algo not in ALGOS:
            raise EnvError(f"behavior: algo={cfg.algo!r}; the jax trainer has {ALGOS}")
        self.cfg, self.info = cfg, env.info
        self.prog = env._program
        self.tokens = Tokens(env.info.layout)
        self.optim = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm),
                                 optax.inject_hyperparams(optax.adam)(learning_rate=cfg.lr, eps=1e-5))
        self.update = jax.jit(self._update, static_argnums=2)
        self.evaluate = jax.jit(self._evaluate, static_argnums=(2, 3))

    # -------------------------------------------------------------- pieces
    def _values(self, critic, obs, state):
        """[..., K] values: K = 1 (MAPPO, V(s)) or n_agents (IPPO, V(o_i))."""
        if self.cfg.algo == "mappo":
            return state_value(critic, *self.tokens.state(state))[..., None]
        return agent_value(critic, *self.tokens.obs(obs))

    def _policy(self, actor, obs, avail, h):
        """Masked log-probabilities [..., n_actions] and the actor's next recurrent state."""
        logits, h = actor_logits(actor, *self.tokens.obs(obs), h)
        return masked_log_probs(logits, avail), h

    def _sequence_policy(self, actor, obs, avail, starts, h0):
        """Log-probabilities over a rollout [T, B, ...] replayed from its first recurrent state,
        which restarts at zero where a battle starts (``starts``), so gradients flow through
        time as the actions were chosen."""
        import jax
        import jax.numpy as jnp

        def step(h, x):
            o, av, start = x
            logp_all, h = self._policy(actor, o, av, jnp.where(start[:, None, None], 0.0, h))
            return h, logp_all

        return jax.lax.scan(step, h0, (obs, avail, starts))[1]

    def hidden_zeros(self, copies: int):
        """The recurrent state of ``copies`` battles: [copies, n_agents, hidden] (width 0 for a
        feed-forward actor, so one code path serves both)."""
        import jax.numpy as jnp

        return jnp.zeros((copies, self.info.n_agents, self.cfg.hidden if self.cfg.recurrent else 0))

    def init(self, key) -> dict:
        import jax

        k_actor, k_critic, k_env, k_run = jax.random.split(key, 4)
        params = {"actor": actor_init(k_actor, self.cfg.hidden, recurrent=self.cfg.recurrent),
                  "critic": (critic_init(k_critic, self.cfg.hidden) if self.cfg.algo == "mappo"
                             else actor_init(k_critic, self.cfg.hidden, value_head=True))}
        k_env, k_reset = jax.random.split(k_env)
        carry, vectors = self.prog._reset_batch(k_reset, self.cfg.num_envs)
        return {"params": params, "opt": self.optim.init(params), "env_key": k_env, "env": carry,
                "vectors": vectors, "key": k_run, "h": self.hidden_zeros(self.cfg.num_envs)}

    # -------------------------------------------------------------- one update
    def _update(self, run: dict, lr, record: bool = False):
        """One rollout and its PPO epochs; ``record``: also return the rollout's steps as played
        (``episodes_from_stream``'s keys), for medium-replay."""
        # Long on purpose: one compiled PPO iteration (rollout, GAE, epochs) reads top to bottom, as
        # in CleanRL.
        import jax
        import jax.numpy as jnp
        import optax

        cfg = self.cfg
        params = run["params"]

        def env_step(carry, _):
            env_key, env, (obs, state, avail), key, h = carry
            key, k_act = jax.random.split(key)
            logp_all, h = self._policy(params["actor"], obs, avail, h)
            actions = jax.random.categorical(k_act, logp_all)
            logp = jnp.take_along_axis(logp_all, actions[..., None], -1)[..., 0]
            value = self._values(params["critic"], obs, state)
            env_key, env, out = self.prog._step_batch(env_key, env, actions.astype(jnp.int32))
            final_obs, final_state, _ = out["final"]
            # a time limit is not an end: bootstrap from the state the battle was cut at (the
            # critic runs only on the rare steps where some battle hit the limit)
            final_value = jax.lax.cond(
                out["truncated"].any(), lambda: self._values(params["critic"], final_obs, final_state),
                lambda: jnp.zeros_like(value))
            step = {"obs": obs, "state": state, "avail": avail, "actions": actions, "logp": logp,
                    "value": value, "reward": out["reward"] * cfg.reward_scale,
                    "done": out["terminated"] | out["truncated"], "truncated": out["truncated"],
                    "final_value": final_value, "won": out["battle_won"],
                    "episode_return": out["episode_return"]}
            if record:
                step.update(env_reward=out["reward"], terminated=out["terminated"], final_obs=final_obs,
                            final_state=final_state, final_avail=out["final"][2])
            h = jnp.where(step["done"][:, None, None], 0.0, h)  # a new battle starts afresh
            return (env_key, env, out["vectors"], key, h), step

        (env_key, env, vectors, key, h), b = jax.lax.scan(
            env_step, (run["env_key"], run["env"], run["vectors"], run["key"], run["h"]), None,
            cfg.rollout_steps)
        last_value = self._values(params["critic"], vectors[0], vectors[1])

        # GAE on the team reward; values are [T, N, K]
        reward = b["reward"][..., None] + cfg.gamma * b["final_value"] * b["truncated"][..., None]
        nonterminal = 1.0 - b["done"][..., None].astype(jnp.float32)
        next_values = jnp.concatenate([b["value"][1:], last_value[None]], 0)
        deltas = reward + cfg.gamma * next_values * nonterminal - b["value"]

        def gae_step(gae, x):
            delta, nonterm = x
            gae = delta + cfg.gamma * cfg.gae_lambda * nonterm * gae
            return gae, gae

        _, adv = jax.lax.scan(gae_step, jnp.zeros_like(last_value), (deltas, nonterminal), reverse=True)
        returns = adv + b["value"]

        data = {k: b[k] for k in ("obs", "state", "avail", "actions", "logp")}
        data["adv"], data["returns"] = adv, returns
        # an agent with only no-op available is dead: nothing to learn from its steps
        data["alive"] = data["avail"][..., 1:].any(-1).astype(jnp.float32)
        if cfg.recurrent:  # minibatches of whole rollouts of some battles: [T, B, ...]
            data["starts"] = jnp.concatenate([jnp.zeros_like(b["done"][:1]), b["done"][:-1]], 0)
            n, take = cfg.num_envs, (lambda x, idx: x[:, idx])
            h0 = run["h"]
        else:  # minibatches of single battle steps: [B, ...]
            n, take = cfg.rollout_steps * cfg.num_envs, (lambda x, idx: x[idx])
            data = {k: v.reshape((n,) + v.shape[2:]) for k, v in data.items()}

        def loss_fn(p, mb, h0_mb):
            if cfg.recurrent:
                logp_all = self._sequence_policy(p["actor"], mb["obs"], mb["avail"], mb["starts"], h0_mb)
            else:
                logp_all = self._policy(p["actor"], mb["obs"], mb["avail"], h0_mb)[0]
            logp = jnp.take_along_axis(logp_all, mb["actions"][..., None], -1)[..., 0]
            entropy = -(jnp.exp(logp_all) * jnp.maximum(logp_all, -1e8)).sum(-1)
            a = mb["adv"]
            a = (a - a.mean()) / (a.std(ddof=1) + 1e-8)
            ratio = jnp.exp(logp - mb["logp"])
            surrogate = jnp.minimum(ratio * a, jnp.clip(ratio, 1 - cfg.clip, 1 + cfg.clip) * a)
            m = mb["alive"]
            count = jnp.maximum(m.sum(), 1.0)
            policy_loss = -(surrogate * m).sum() / count
            entropy_mean = (entropy * m).sum() / count
            value_loss = jnp.mean((self._values(p["critic"], mb["obs"], mb["state"]) - mb["returns"]) ** 2)
            loss = policy_loss + cfg.value_coef * value_loss - cfg.entropy_coef * entropy_mean
            return loss, (policy_loss, value_loss, entropy_mean)

        def minibatch_step(carry, idx):
            p, opt = carry
            mb = jax.tree.map(lambda x: take(x, idx), data)
            h0_mb = h0[idx] if cfg.recurrent else jnp.zeros(mb["avail"].shape[:-1] + (0,))
            grads, stats = jax.grad(loss_fn, has_aux=True)(p, mb, h0_mb)
            updates, opt = self.optim.update(grads, opt, p)
            return (optax.apply_updates(p, updates), opt), jnp.stack(stats)

        def epoch(carry, k):
            order = jax.random.permutation(k, n).reshape(cfg.minibatches, -1)
            return jax.lax.scan(minibatch_step, carry, order)

        clip_state, adam_state = run["opt"]
        opt = (clip_state, adam_state._replace(hyperparams={**adam_state.hyperparams, "learning_rate": lr}))
        key, k_epochs = jax.random.split(key)
        (params, opt), stats = jax.lax.scan(epoch, (params, opt), jax.random.split(k_epochs, cfg.epochs))
        done = b["done"]
        metrics = {"loss/policy": stats[..., 0].mean(), "loss/value": stats[..., 1].mean(),
                   "policy/entropy": stats[..., 2].mean(), "episodes": done.sum(),
                   "return_sum": (b["episode_return"] * done).sum(), "wins": (b["won"] & done).sum()}
        run = {"params": params, "opt": opt, "env_key": env_key, "env": env, "vectors": vectors,
               "key": key, "h": h}
        if not record:
            return run, metrics
        played = {k: b[k] for k in ("obs", "state", "avail", "actions", "terminated", "done", "won",
                                    "final_obs", "final_state", "final_avail")}
        return run, metrics, {**played, "reward": b["env_reward"]}

    # -------------------------------------------------------------- evaluation
    def _evaluate(self, actor, key, episodes: int, greedy: bool):
        """Win rate and return of ``episodes`` fresh battles (the first battle of as many copies;
        every battle ends within the episode limit)."""
        import jax
        import jax.numpy as jnp

        k_reset, k_env, k_act = jax.random.split(key, 3)
        carry, vectors = self.prog._reset_batch(k_reset, episodes)

        def step(c, k):
            env_key, env, (obs, _, avail), finished, won, ret, h = c
            logp_all, h = self._policy(actor, obs, avail, h)
            actions = logp_all.argmax(-1) if greedy else jax.random.categorical(k, logp_all)
            env_key, env, out = self.prog._step_batch(env_key, env, actions.astype(jnp.int32))
            done = (out["terminated"] | out["truncated"]) & ~finished
            won = jnp.where(done, out["battle_won"], won)
            ret = jnp.where(done, out["episode_return"], ret)
            return (env_key, env, out["vectors"], finished | done, won, ret, h), None

        init = (k_env, carry, vectors, jnp.zeros(episodes, bool), jnp.zeros(episodes, bool),
                jnp.zeros(episodes, jnp.float32), self.hidden_zeros(episodes))
        keys = jax.random.split(k_act, self.info.episode_limit)
        (_, _, _, _, won, ret, _), _ = jax.lax.scan(step, init, keys)
        return won.mean(), ret.mean()


# ---------------------------------------------------------------------------- compiled collection
SAMPLING_HELP = "greedy, sampled, or epsilon:E (a uniformly random available action with probability E)"


def parse_sampling(spec: str) -> tuple[str, float]:
    """``"greedy" | "sampled" | "epsilon:0.1"`` -> (mode, epsilon), one clear error otherwise."""
    if spec in ("greedy", "sampled"):
        return spec, 0.0
    if isinstance(spec, str) and spec.startswith("epsilon:"):
        try:
            eps = float(spec.split(":", 1)[1])
        except ValueError:
            eps = -1.0
        if 0.0 <= eps <= 1.0:
            return "epsilon", eps
    raise EnvError(f"sampling={spec!r}; expected {SAMPLING_HELP}, E in [0, 1]")


def choose_actions(logp_all, avail, key, mode: str, epsilon):
    """Actions of every agent from masked log-probabilities under a sampling mode."""
    import jax
    import jax.numpy as jnp

    if mode == "sampled":
        return jax.random.categorical(key, logp_all)
    greedy = logp_all.argmax(-1)
    if mode == "greedy":
        return greedy
    k_coin, k_any = jax.random.split(key)
    uniform = jax.random.categorical(k_any, jnp.where(avail, 0.0, -jnp.inf))
    return jnp.where(jax.random.uniform(k_coin, greedy.shape) < epsilon, uniform, greedy)


class Recorder:
    """Plays a policy on ``num_envs`` SMAX copies inside one compiled program (chunks of
    ``chunk`` steps) and cuts the stream into episodes in ODIS's layout, as
    :func:`marl.data.episodes.record_episodes` does on the host: the same battles for the same seed
    (``SmaxEnv``'s keys), so greedy play records the same episodes."""

    def __init__(self, env, num_envs: int, mode: str, chunk: int = 32):
        import jax

        self.prog, self.info, self.tokens = env._program, env.info, Tokens(env.info.layout)
        self.num_envs, self.mode, self.chunk = num_envs, mode, chunk
        self.reset = jax.jit(self.prog._reset_batch, static_argnums=1)
        self.play = jax.jit(self._play)

    def _play(self, actor, env_key, carry, vectors, h, key, epsilon):
        import jax
        import jax.numpy as jnp

        def step(c, k):
            env_key, carry, (obs, state, avail), h = c
            logits, h = actor_logits(actor, *self.tokens.obs(obs), h)
            logp_all = masked_log_probs(logits, avail)
            actions = choose_actions(logp_all, avail, k, self.mode, epsilon).astype(jnp.int32)
            env_key, carry, out = self.prog._step_batch(env_key, carry, actions)
            row = {"obs": obs, "state": state, "avail": avail, "actions": actions,
                   "reward": out["reward"], "terminated": out["terminated"],
                   "done": out["terminated"] | out["truncated"], "won": out["battle_won"],
                   "final_obs": out["final"][0], "final_state": out["final"][1],
                   "final_avail": out["final"][2]}
            h = jnp.where(row["done"][:, None, None], 0.0, h)
            return (env_key, carry, out["vectors"], h), row

        (env_key, carry, vectors, h), rows = jax.lax.scan(
            step, (env_key, carry, vectors, h), jax.random.split(key, self.chunk))
        return env_key, carry, vectors, h, rows

    def record(self, weights: dict, episodes: int, seed: int, act_seed: int, epsilon: float = 0.0):
        """``episodes`` finished episodes as ODIS-layout arrays [episodes, T+1, ...] and their
        battle_won, in the order they finish (then copy order), as the host recorder keeps them."""
        import jax
        import jax.numpy as jnp

        actor = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in weights.items()}
        env_key, reset_key = jax.random.split(jax.random.PRNGKey(seed))
        carry, vectors = self.reset(reset_key, self.num_envs)
        width = actor["gru.weight_hh"].shape[1] if "gru.weight_hh" in actor else 0
        h = jnp.zeros((self.num_envs, self.info.n_agents, width))
        key, chunks, finished = jax.random.PRNGKey(act_seed), [], 0
        while finished < episodes:
            key, k = jax.random.split(key)
            env_key, carry, vectors, h, rows = self.play(actor, env_key, carry, vectors, h, k,
                                                         jnp.float32(epsilon))
            rows = jax.device_get(rows)
            chunks.append(rows)
            finished += int(rows["done"].sum())
        stream = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
        return episodes_from_stream(stream, episodes, self.info)


def episodes_from_stream(stream: dict, episodes: int | None, info, first_end: int = 0):
    """Cut a stream of batched steps [S, N, ...] (each copy auto-resetting, the first row a
    fresh start) into the first ``episodes`` finished episodes (None: every episode that ends
    at row ``first_end`` or later), vectorised: ODIS arrays [episodes, T+1, ...] with the
    post-terminal step (final vectors, the first available action as a placeholder)."""
    done = stream["done"]
    S, N = done.shape
    steps = np.arange(S)[:, None]
    boundary = np.vstack([np.ones((1, N), bool), done[:-1]])
    start = np.maximum.accumulate(np.where(boundary, steps, 0), axis=0)
    pos = steps - start  # place of each step in its episode
    episode_of_copy = np.cumsum(boundary, axis=0) - 1  # the how-many-th episode of its copy
    # finished episodes in the order the host keeps them: by the step they end, then copy
    end_s, end_n = np.nonzero(done)  # row-major: by step, then copy
    keep = end_s >= first_end
    end_s, end_n = end_s[keep][:episodes], end_n[keep][:episodes]
    if episodes is None:
        episodes = len(end_s)
    elif len(end_s) < episodes:
        raise EnvError(f"only {len(end_s)} of {episodes} episodes finished")
    # every step whose (copy, episode) is kept gets its episode's row
    lookup = np.full((N, episode_of_copy.max() + 2), -1)
    lookup[end_n, episode_of_copy[end_s, end_n]] = np.arange(episodes)
    gid = lookup[np.broadcast_to(np.arange(N), (S, N)), episode_of_copy]
    s_idx, n_idx = np.nonzero(gid >= 0)
    rows, t = gid[s_idx, n_idx], pos[s_idx, n_idx]
    T, A = info.episode_limit + 1, info.n_agents
    out = {"obs": np.zeros((episodes, T, A, info.obs_dim), np.float32),
           "state": np.zeros((episodes, T, info.state_dim), np.float32),
           "reward": np.zeros((episodes, T, 1), np.float32),
           "terminated": np.zeros((episodes, T, 1), np.uint8),
           "filled": np.zeros((episodes, T, 1), np.int64),
           "actions": np.zeros((episodes, T, A, 1), np.int64),
           "avail_actions": np.zeros((episodes, T, A, info.n_actions), np.int32)}
    for name, key in (("obs", "obs"), ("state", "state"), ("avail_actions", "avail")):
        out[name][rows, t] = stream[key][s_idx, n_idx]
    out["actions"][rows, t, :, 0] = stream["actions"][s_idx, n_idx]
    out["reward"][rows, t, 0] = stream["reward"][s_idx, n_idx]
    out["terminated"][rows, t, 0] = stream["terminated"][s_idx, n_idx]
    out["filled"][rows, t] = 1
    # the post-terminal step
    last = pos[end_s, end_n] + 1
    ids = np.arange(episodes)
    out["obs"][ids, last] = stream["final_obs"][end_s, end_n]
    out["state"][ids, last] = stream["final_state"][end_s, end_n]
    final_avail = stream["final_avail"][end_s, end_n]
    out["avail_actions"][ids, last] = final_avail
    out["actions"][ids, last, :, 0] = final_avail.argmax(-1)
    out["filled"][ids, last] = 1
    out["actions_onehot"] = (np.eye(info.n_actions, dtype=np.float32)[out["actions"][..., 0]]
                             * out["filled"][..., None])
    return out, stream["won"][end_s, end_n]


class Replay:
    """The training rollouts as medium-replay data, as ODIS's medium-replay is the behaviour
    run's own experience up to medium: every update's finished episodes (sampled actions, as
    played) go to ``DIR/replay/<env_steps>.h5`` until ``record_replay`` env steps or until a
    snapshot's greedy win rate passes the medium band (``DIR/replay/done``).
    ``marl collect --quality medium-replay`` on the run then takes its episodes from the files
    up to the medium snapshot.

    Episodes cross rollouts, so each update's steps are cut together with the previous
    update's (an episode lasts at most the episode limit, hence ``rollout_steps`` must be at
    least that). After a resume the first rollout's episodes that began before it are lost;
    files already written are kept, never rewritten."""

    def __init__(self, cfg: BehaviorConfig, info, out: Path):
        import envs

        if cfg.rollout_steps < info.episode_limit:
            raise EnvError(f"--record-replay needs rollouts at least as long as an episode: "
                           f"rollout_steps={cfg.rollout_steps} < episode limit {info.episode_limit}")
        defaults = envs.option_defaults(cfg.task)
        self.options = {k: v for k, v in info.options.items() if k in defaults and v != defaults[k]}
        self.cfg, self.info, self.folder = cfg, info, out / "replay"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.previous = None

    def active(self, env_steps: int) -> bool:
        return env_steps < self.cfg.record_replay and not (self.folder / "done").exists()

    def add(self, played: dict, env_steps: int, fresh_start: bool) -> None:
        from marl.data.format import write_dataset

        previous, self.previous = self.previous, played
        if previous is None and not fresh_start:
            return  # resumed: this rollout's opening episodes began before it
        window = played if previous is None else {k: np.concatenate([previous[k], played[k]]) for k in played}
        first_end = 0 if previous is None else len(previous["done"])
        path = self.folder / f"{env_steps:012d}.h5"
        if path.exists() or not window["done"][first_end:].any():
            return
        arrays, won = episodes_from_stream(window, None, self.info, first_end)
        write_dataset(path, arrays, task=self.cfg.task, backend=self.info.backend, quality="medium-replay",
                      behavior_policy={"id": f"mappo-rollouts:{self.folder.parent.name}",
                                       "sampling": "sampled", "env_steps": env_steps},
                      seed=self.cfg.seed, env_info=self.info, env_options=self.options, battle_won=won)

    def snapshot_scored(self, win_rate: float, env_steps: int) -> None:
        from marl.data.qualities import QUALITIES

        if win_rate > QUALITIES["medium"].win_rate[1] and not (self.folder / "done").exists():
            (self.folder / "done").write_text(json.dumps({"env_steps": env_steps, "win_rate": win_rate}))


# ---------------------------------------------------------------------------- host loop
def _to_host(tree) -> list:
    import jax

    import torch

    return [torch.from_numpy(np.array(leaf)) for leaf in jax.tree.leaves(tree)]


def _from_host(leaves: list, like, path: Path):
    import jax
    import jax.numpy as jnp

    template, treedef = jax.tree.flatten(like)
    if len(leaves) != len(template) or any(tuple(a.shape) != b.shape for a, b in zip(leaves, template)):
        raise EnvError(f"{path} holds a training state of another shape (network width, "
                       "number of copies or map): resume it with the settings it was started with")
    return jax.tree.unflatten(treedef, [jnp.asarray(a.numpy(), dtype=b.dtype) for a, b in zip(leaves, template)])


def export_params(actor: dict) -> dict:
    """Actor parameters as torch tensors named as :class:`marl.behavior.policy.EntityActor`'s."""
    import torch

    return {name: torch.from_numpy(np.array(value, np.float32)) for name, value in actor.items()}


def train(cfg: BehaviorConfig, out: str | Path, log=print) -> dict:
    """Train (or resume) a behaviour policy for a SMAC map on SMAX; returns the last snapshot's
    metadata (same files as :func:`marl.behavior.train`)."""
    # Long on purpose: the run's life (resume, compile, loop, snapshots, evaluation) reads top to
    # bottom, as in CleanRL.
    import os

    if cfg.threads == 1:  # read when XLA's CPU backend starts (a no-op if it already has)
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import jax
    import jax.numpy as jnp

    import envs

    out = Path(out)
    env = envs.make(cfg.task, num_envs=1, seed=cfg.seed, **(cfg.env_options or {}))
    if env.info.family != "smac" or env.info.backend != "smax":
        raise EnvError(f"the jax behaviour trainer runs SMAC maps on SMAX, not {cfg.task} "
                       f"({env.info.family}/{env.info.backend}): use --engine torch")
    trainer = Trainer(cfg, env)
    replay = Replay(cfg, env.info, out) if cfg.record_replay else None
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    run = trainer.init(jax.random.PRNGKey(cfg.seed))
    update, env_steps, snapshot_meta = 0, 0, {}
    ckpt_path = out / "checkpoint.pt"
    ckpt = read_checkpoint(ckpt_path, cfg, ("engine", "algo", "recurrent", "num_envs", "rollout_steps",
                                            "minibatches", "record_replay"))
    if ckpt is not None:
        run = _from_host(ckpt["state"], run, ckpt_path)
        update, env_steps = ckpt["update"], ckpt["env_steps"]
        log(f"resuming {cfg.task} from update {update} ({env_steps:,} env steps)")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tb"))
    eval_key = jax.random.PRNGKey(cfg.seed + 7)
    recent: list[tuple[int, float, int]] = []  # (episodes, return sum, wins) of the last updates
    first_update, rate = update, 0.0
    while env_steps < cfg.total_env_steps:
        lr = learning_rate(cfg, env_steps)
        recording = replay is not None and replay.active(env_steps)
        run, metrics, *played = trainer.update(run, jnp.float32(lr), recording)
        metrics = {k: float(v) for k, v in metrics.items()}
        update += 1
        env_steps += cfg.rollout_steps * cfg.num_envs
        if recording:
            replay.add(jax.device_get(played[0]), env_steps, fresh_start=update == 1)
        if update == first_update + 1:  # the speed is measured after compilation
            start, start_steps = time.perf_counter(), env_steps
        else:
            rate = (env_steps - start_steps) / max(time.perf_counter() - start, 1e-9)
        recent = (recent + [(metrics["episodes"], metrics["return_sum"], metrics["wins"])])[-5:]
        episodes = max(sum(e for e, _, _ in recent), 1.0)
        for name, value in (("loss/policy", metrics["loss/policy"]), ("loss/value", metrics["loss/value"]),
                            ("policy/entropy", metrics["policy/entropy"]),
                            ("optim/lr", lr),
                            ("rollout/return", sum(r for _, r, _ in recent) / episodes),
                            ("rollout/win_rate", sum(w for _, _, w in recent) / episodes),
                            ("speed/env_steps_per_s", rate)):
            writer.add_scalar(name, value, env_steps)
        if update % cfg.snapshot_every == 0 or env_steps >= cfg.total_env_steps:
            actor = run["params"]["actor"]
            results = {}
            for kind in ("greedy", "sampled"):
                won, ret = trainer.evaluate(actor, eval_key, cfg.eval_episodes, kind == "greedy")
                results[kind] = {"return": float(ret), "episodes": cfg.eval_episodes, "win_rate": float(won)}
                for key, value in results[kind].items():
                    writer.add_scalar(f"eval_{kind}/{key}", value, env_steps)
            if replay is not None:
                replay.snapshot_scored(results["greedy"]["win_rate"], env_steps)
            snapshot_meta = {"task": cfg.task, "update": update, "env_steps": env_steps,
                             "greedy": results["greedy"], "sampled": results["sampled"],
                             "config": asdict(cfg), "env_options": env.info.options}
            save_snapshot(export_params(actor), out / "snapshots" / f"{update:06d}.safetensors",
                                snapshot_meta)
            log(f"{cfg.task} update {update} env steps {env_steps:,} ({rate:,.0f}/s) "
                f"greedy {results['greedy']} sampled {results['sampled']} "
                f"entropy {metrics['policy/entropy']:.3f}")
            atomic_save({"config": asdict(cfg), "state": _to_host(run), "update": update,
                         "env_steps": env_steps, "lr": lr}, ckpt_path)
        writer.flush()
    writer.close()
    return snapshot_meta


__all__ = ["ALGOS", "Tokens", "Trainer", "actor_logits", "export_params", "train"]
