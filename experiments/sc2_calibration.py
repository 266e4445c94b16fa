"""Does StarCraft II data play the same on SMAX? ODIS's 3m file (recorded in StarCraft II 4.10)
against SMAX rollouts of a policy cloned from it, with SMAX's own statistics, with the
``sc2-4.10`` calibration (``envs/smax.py``), and with it and a delayed, randomly targeting or
fire-spreading opponent: per-step
displacement of a moving marine and of an enemy in the first steps, the distance between the
teams' centres after 3 and 6 steps, the distance at a battle's first attack, battle length and
win rate, and how the enemies fire (the share of steps on which allies lose health where more
than one does; how often several shots land in one step, and how often those hit several allies),
measured the same way on both.

    python experiments/sc2_calibration.py --odis PATH/TO/ODIS/dataset [--out runs/sc2-calibration]
        [--updates 1500] [--battles 512]

Trains BC on the file (``experiments/baselines/bc.yaml``, a 3m-only task set) unless the run
exists, then writes ``OUT/calibration.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from envs.smax import ARENA

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"smax": {}, "sc2-4.10": {"calibration": "sc2-4.10"},
            "sc2-4.10, random targets": {"calibration": "sc2-4.10", "enemy_attack_mode": "random"},
            "sc2-4.10, enemy_reaction 0.8": {"calibration": "sc2-4.10", "enemy_reaction": 0.8},
            "sc2-4.10, enemy_reaction 0.8, random targets": {
                "calibration": "sc2-4.10", "enemy_reaction": 0.8, "enemy_attack_mode": "random"},
            "sc2-4.10, spread targets": {"calibration": "sc2-4.10", "enemy_attack_mode": "spread"},
            "sc2-4.10, enemy_reaction 0.8, spread targets": {
                "calibration": "sc2-4.10", "enemy_reaction": 0.8, "enemy_attack_mode": "spread"}}
APPROACH_STEPS = 6  # the enemies' first steps, before the teams meet
N_AGENTS, N_ENEMIES, SIGHT = 3, 3, 9.0  # 3m: marine sight 9
ALLY_STATE, ENEMY_FEATS = 4, 5  # (health, cooldown, x, y); (attackable, dist, dx, dy, health)
MOVES, FIRST_ATTACK = (2, 3, 4, 5), 6
# one marine shot, as a fraction of a marine's 45 hit points: StarCraft II's 6 damage, SMAX's 9
MARINE_SHOT = {"sc2-4.10": 6.0 / 45.0, "smax": 9.0 / 45.0}


def positions(state: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Allies' (x, y) in map units [..., n_agents, 2] and alive flags, from SMAC's state, whose
    positions are offsets from the centre over the arena's ``width``."""
    allies = state[..., : N_AGENTS * ALLY_STATE].reshape(*state.shape[:-1], N_AGENTS, ALLY_STATE)
    return allies[..., 2:4] * width, allies[..., 0] > 0


def step_displacements(state_t, state_next, actions_t, valid, width: float) -> np.ndarray:
    """How far each marine that chose a move, and was alive before and after, moved in one
    step (map units); ``valid`` [...] marks real transitions."""
    (p0, alive0), (p1, alive1) = positions(state_t, width), positions(state_next, width)
    moved = np.isin(actions_t, MOVES) & alive0 & alive1 & valid[..., None]
    return np.linalg.norm(p1 - p0, axis=-1)[moved]


def approach(states: np.ndarray, width: float) -> tuple[np.ndarray, list[float]]:
    """From battles' first states ``[E, >= APPROACH_STEPS + 1, state_dim]``: how far each live
    enemy moves per step, and the mean distance between the teams' centres at steps 3 and 6."""
    allies, _ = positions(states, width)
    enemy = states[..., N_AGENTS * ALLY_STATE: N_AGENTS * ALLY_STATE + 3 * N_ENEMIES]
    enemy = enemy.reshape(*states.shape[:-1], N_ENEMIES, 3)
    e_pos, e_alive = enemy[..., 1:3] * width, enemy[..., 0] > 0
    k = APPROACH_STEPS
    step = np.linalg.norm(e_pos[:, 1:k + 1] - e_pos[:, :k], axis=-1)[e_alive[:, 1:k + 1] & e_alive[:, :k]]
    gap = np.linalg.norm(allies.mean(-2) - e_pos.mean(-2), axis=-1)
    return step, [float(gap[:, 3].mean()), float(gap[:, 6].mean())]


def spread_fire(states: np.ndarray, valid: np.ndarray) -> float:
    """Of the steps ``[E, T]`` on which allies lose health, the share on which several do: how
    the enemies split their fire (focus fire gives 0)."""
    health = states[..., : N_AGENTS * ALLY_STATE].reshape(*states.shape[:-1], N_AGENTS, ALLY_STATE)[..., 0]
    hit = (health[:, :-1] - health[:, 1:] > 1e-6) & valid[:, :-1, None] & valid[:, 1:, None]
    n_hit = hit.sum(-1)
    return float((n_hit[n_hit > 0] > 1).mean())


def shots_landed(states: np.ndarray, valid: np.ndarray, shot: float) -> dict:
    """How the enemies' shots fall, from the allies' health ``[E, T]`` alone: a marine shot takes
    ``shot`` of a marine's hit points (a killing shot may take less), so each
    ally's drop in a step counts the shots it took. Returns the share of the steps with a hit on
    which several shots land (how the enemies' attacks line up in time) and, of the steps with two
    or more shots, the share that hit more than one ally, beside what uniformly random targets
    among the allies alive would give (the targeting itself: focus fire gives 0)."""
    health = states[..., : N_AGENTS * ALLY_STATE].reshape(*states.shape[:-1], N_AGENTS, ALLY_STATE)[..., 0]
    both = valid[:, :-1] & valid[:, 1:]
    drop = np.clip(health[:, :-1] - health[:, 1:], 0, None) * both[..., None]
    shots = np.ceil(drop / shot - 0.01)  # a partial (killing) shot counts as one
    total, n_hit = shots.sum(-1), (shots > 0).sum(-1)
    alive = (health[:, :-1] > 0).sum(-1)
    several = total >= 2
    # uniformly random targets: k shots on a alive allies hit one ally with probability a^(1-k)
    chance = 1.0 - np.power(np.maximum(alive, 1).astype(np.float64), 1.0 - total)
    return {"several_shots": float(several[total > 0].mean()),
            "spread_given_several": float((n_hit[several] > 1).mean()),
            "spread_if_uniform": float(chance[several].mean()),
            "steps_with_several": int(several.sum())}


def first_attack_distances(obs, actions, valid) -> np.ndarray:
    """Per episode ``[E, T, ...]``: the distance from the first agent that attacks, at the
    battle's first attack, to its target (map units); episodes without an attack give none."""
    attack = (actions >= FIRST_ATTACK) & valid[..., None]
    has = attack.any((1, 2))
    step = attack.any(2).argmax(1)[has]
    episodes = np.flatnonzero(has)
    agent = attack[episodes, step].argmax(1)
    target = actions[episodes, step, agent] - FIRST_ATTACK
    dist = obs[episodes, step, agent, 4 + ENEMY_FEATS * target + 1]
    return dist * SIGHT


def data_stats(root: Path) -> dict:
    from marl.data.format import read_dataset

    data = read_dataset(root / "3m" / "medium")
    a = data.arrays
    lengths = a["filled"][..., 0].sum(1)
    transition = np.arange(a["filled"].shape[1])[None] < (lengths - 1)[:, None]
    actions = a["actions"][..., 0]
    width = ARENA["sc2-4.10"]  # SMAC divides positions by 3m's playable width
    long = lengths > APPROACH_STEPS + 1
    return summarise(
        step_displacements(a["state"][:, :-1], a["state"][:, 1:], actions[:, :-1], transition[:, :-1],
                           width),
        approach(a["state"][long], width), first_attack_distances(a["obs"], actions, transition),
        lengths - 1, data.returns >= 19.0,  # a won 3m battle returns 20 (ODIS records no wins)
        *fire(a["state"], np.arange(a["filled"].shape[1])[None] < lengths[:, None], "sc2-4.10"))


def rollout_stats(run: Path, options: dict, battles: int, seed: int) -> dict:
    import envs
    from marl.rollout import GreedyPolicy
    from marl.runs import load_run_model

    _, model, _, _ = load_run_model(run)
    env = envs.make("smac:3m", num_envs=battles, seed=seed, **options)
    width = ARENA[options.get("calibration", "smax")]
    policy = GreedyPolicy(model, env.info)
    moves, obs_seen, acts_seen, valid_seen, states_seen = [], [], [], [], []
    previous = {}

    def on_step(ts, actions, playing):
        if previous:
            both = previous["playing"] & playing
            moves.append(step_displacements(previous["state"], ts.state, previous["actions"], both,
                                            width))
        previous.update(state=ts.state, actions=actions, playing=playing)
        obs_seen.append(ts.obs), acts_seen.append(actions), valid_seen.append(playing)
        states_seen.append(ts.state)

    outcomes = envs.play(env, policy, seed=seed, on_step=on_step)
    obs, acts, valid = (np.stack(x, 1) for x in (obs_seen, acts_seen, valid_seen))
    states = np.stack(states_seen[:APPROACH_STEPS + 1], 1)
    long = outcomes.lengths > APPROACH_STEPS + 1
    every_state = np.stack(states_seen, 1)
    return summarise(np.concatenate(moves), approach(states[long], width),
                     first_attack_distances(obs, acts, valid), outcomes.lengths, outcomes.wins,
                     *fire(every_state, valid, options.get("calibration", "smax")))


def fire(states: np.ndarray, valid: np.ndarray, calibration: str) -> tuple[float, dict]:
    return spread_fire(states, valid), shots_landed(states, valid, MARINE_SHOT[calibration])


def summarise(moves, approaching, first_attack, lengths, wins, spread: float, shots: dict
              ) -> dict:
    def dist(x):
        x = np.asarray(x, np.float64)
        return {"mean": float(x.mean()), "median": float(np.median(x)),
                "p10": float(np.percentile(x, 10)), "p90": float(np.percentile(x, 90)),
                "n": int(len(x))}

    return {"move_per_step": dist(moves), "enemy_move_per_step": dist(approaching[0]),
            "team_gap_at_steps_3_6": approaching[1], "first_attack_distance": dist(first_attack),
            "battle_length": dist(lengths), "win_rate": float(np.mean(wins)),
            "enemy_fire_spread": spread, "enemy_shots": shots,
            "battles": int(len(lengths))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--odis", required=True, help="ODIS's dataset folder (holds 3m/medium/)")
    parser.add_argument("--out", default="runs/sc2-calibration")
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--battles", type=int, default=512)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    out, odis = Path(args.out), Path(args.odis).resolve()
    out.mkdir(parents=True, exist_ok=True)
    run = out / "bc-3m"
    if not (run / "checkpoints" / "last.pt").exists():
        taskset = out / "odis-3m.yaml"
        taskset.write_text("name: odis-3m\nfamily: smac\ntrain_tasks: [smac:3m]\n"
                           "test_tasks: [smac:3m]\nqualities: [medium]\nenv_options: {}\n")
        subprocess.run([sys.executable, "-m", "marl", "train", "--config",
                        str(REPO / "experiments" / "baselines" / "bc.yaml"), "--out", str(run),
                        f"data.taskset={taskset}", f"data.root={odis}", "data.quality=medium",
                        f"updates={args.updates}", "eval.interval=0", "threads=1"], check=True)
    table = {"odis 3m medium (StarCraft II 4.10)": data_stats(odis)}
    for name in args.settings:
        table[f"SMAX, {name}"] = rollout_stats(run, SETTINGS[name], args.battles, args.seed)
    (out / "calibration.json").write_text(json.dumps(table, indent=1))
    print("| source | marine step (median, p10-p90) | enemy step, first 6 (mean) | team gap at "
          "steps 3, 6 | first-attack distance (median) | battle length (mean) | enemy fire "
          "spread | hit steps with several shots | of those, several allies hit (uniform "
          "targets) | win rate |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, row in table.items():
        m, f, b = row["move_per_step"], row["first_attack_distance"], row["battle_length"]
        gap, shots = row["team_gap_at_steps_3_6"], row["enemy_shots"]
        print(f"| {name} | {m['median']:.3f} ({m['p10']:.3f}-{m['p90']:.3f}) | "
              f"{row['enemy_move_per_step']['mean']:.3f} | {gap[0]:.2f}, {gap[1]:.2f} | "
              f"{f['median']:.2f} | {b['mean']:.1f} | {row['enemy_fire_spread']:.3f} | "
              f"{shots['several_shots']:.2f} | {shots['spread_given_several']:.2f} "
              f"({shots['spread_if_uniform']:.2f}) | {row['win_rate']:.3f} ({row['battles']}) |")

if __name__ == "__main__":
    main()
