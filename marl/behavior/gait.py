"""A scripted swimming gait: the behaviour policy of the many-segment swimmers.

MAPPO plateaus on the swimmers (ManySegmentSwimmer-2x2 at 85, 3x2 at 31; docs/datasets.md), far
from swimming. A travelling wave swims every chain of segments: joint ``j`` follows the angle
``amplitude * sin(2 pi frequency t - phase_lag * (depth_j - 1))``, where ``depth_j`` counts the
actuated joints from the head (``MujocoLayout.joint_depth``), tracked by a PD law
``kp * (reference - angle) - kd * angular velocity`` clipped to the action range. Each agent
reads only its own joints' angle and velocity and the episode's clock, so the gait is the same
decentralised policy for every partition and every number of segments.

A gait policy is a JSON file ``NAME.gait.json`` in a policy folder, with the provenance fields
of a snapshot's record (``task``, ``env_steps`` as its order, ``greedy`` and ``sampled``
results, ``config``) and its ``gait`` parameters. The quality ladder of a folder is a ladder of
amplitudes (``marl behavior gait``). Sampled actions add Gaussian noise of ``noise`` to the PD
action (medium-replay), as a Gaussian policy would.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from envs.core import EnvError

SUFFIX = ".gait.json"
ROBOTS = ("ManySegmentSwimmer", "Swimmer")  # chains of segments, joints about one axis


@dataclass(frozen=True)
class TravellingWave:
    amplitude: float = 1.0  # radians of the reference angle
    frequency: float = 0.3  # waves per second of simulated time
    # radians by which a joint lags the one above it; negative: the wave runs from the last
    # joint up to the head joint, which is what drives these swimmers forward (+x)
    phase_lag: float = -np.pi / 2
    kp: float = 2.0
    kd: float = 0.1
    noise: float = 0.3  # std of the action noise when sampling

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise EnvError(f"gait parameter {name} must be a finite number, got {value!r}")
        if self.amplitude < 0 or self.frequency < 0 or self.noise < 0:
            raise EnvError(f"gait amplitude, frequency and noise must be >= 0, got {self}")


class GaitDriver:
    """Chooses every copy's actions for one task's layout: ``__call__(timestep)`` keeps each
    copy's clock (restarted where the last step ended an episode, as the env auto-resets)."""

    def __init__(self, gait: TravellingWave, info, dt: float, greedy: bool = True,
                 rng: np.random.Generator | None = None):
        from envs.mamujoco import OBS_KINDS

        layout = info.layout
        if layout.robot not in ROBOTS:
            raise EnvError(f"a swimming gait drives {ROBOTS}, not {layout.robot} "
                           f"({info.task}): use a trained policy")
        kind = np.asarray(layout.state_kind)
        entity = np.asarray(layout.state_entity)
        n_joints = len(layout.joint_names)
        self.angle = np.array([np.flatnonzero((entity == j) & (kind == OBS_KINDS.index("qpos")))[0]
                               for j in range(n_joints)])
        self.velocity = np.array([np.flatnonzero((entity == j) & (kind == OBS_KINDS.index("qvel")))[0]
                                  for j in range(n_joints)])
        self.phase = -gait.phase_lag * (np.asarray(layout.joint_depth, np.float64) - 1)
        # joint -> (agent, slot) of the env's actions [N, n_agents, n_actions]
        self.agent = np.zeros(n_joints, np.int64)
        self.slot = np.zeros(n_joints, np.int64)
        for a, joints in enumerate(layout.agent_joints):
            self.agent[list(joints)], self.slot[list(joints)] = a, np.arange(len(joints))
        self.shape = (info.n_agents, info.n_actions)
        self.gait, self.dt, self.greedy = gait, dt, greedy
        self.rng = rng or np.random.default_rng(0)
        self.clock: np.ndarray | None = None

    def __call__(self, ts) -> np.ndarray:
        n = ts.state.shape[0]
        self.clock = np.zeros(n) if self.clock is None else np.where(ts.done, 0.0, self.clock)
        g = self.gait
        t = self.clock[:, None] * self.dt
        reference = g.amplitude * np.sin(2 * np.pi * g.frequency * t + self.phase)
        torque = g.kp * (reference - ts.state[:, self.angle]) - g.kd * ts.state[:, self.velocity]
        if not self.greedy:
            torque = torque + self.rng.normal(0.0, g.noise, torque.shape)
        actions = np.zeros((n,) + self.shape, np.float32)
        actions[:, self.agent, self.slot] = np.clip(torque, -1.0, 1.0)
        self.clock = self.clock + 1
        return actions


def check_task(task: str) -> None:
    """One clear error, before anything runs, for a task no gait can drive."""
    family, _, map_name = task.partition(":")
    if family != "mamujoco":
        raise EnvError(f"a swimming gait drives multi-agent MuJoCo swimmers "
                       f"(mamujoco:ManySegmentSwimmer-NxK), not {task!r}")
    from envs.mamujoco import parse_map

    robot = parse_map(map_name).robot
    if robot not in ROBOTS:
        raise EnvError(f"a swimming gait drives {ROBOTS}, not {robot} ({task}): use a trained policy")


def is_gait(path: str | Path) -> bool:
    return str(path).endswith(SUFFIX)


def load_gait(path: str | Path) -> tuple[TravellingWave, dict]:
    """The gait of a ``.gait.json`` policy file, and the file's record."""
    try:
        record = json.loads(Path(path).read_text())
        gait = TravellingWave(**record["gait"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EnvError(f"{path} is not a gait policy (a JSON record with 'gait' parameters "
                       f"{list(asdict(TravellingWave()))}): {exc}") from None
    return gait, record


def driver(path: str | Path, env, greedy: bool, seed: int) -> GaitDriver:
    """A gait policy file as the chooser of ``env``'s actions."""
    gait, _ = load_gait(path)
    check_task(env.info.task)
    return GaitDriver(gait, env.info, env.control_dt, greedy, np.random.default_rng(seed))


def play_gait(task: str, gait: TravellingWave, episodes: int, seed: int = 0,
              greedy: bool = True) -> dict:
    """Mean return and length of ``episodes`` episodes of ``task`` played by ``gait``."""
    import envs

    env = envs.make(task, num_envs=episodes, seed=seed)
    choose = GaitDriver(gait, env.info, env.control_dt, greedy, np.random.default_rng(seed))
    outcomes = envs.play(env, choose, seed=seed)
    env.close()
    return {"return": float(outcomes.returns.mean()), "length": float(outcomes.lengths.mean()),
            "episodes": episodes}


LADDER = {"poor": 0.0, "replay_1": 0.1, "replay_2": 0.2, "medium": 0.3, "expert": 1.0}


def write_ladder(task: str, out: str | Path, gait: TravellingWave = TravellingWave(),
                 episodes: int = 16, seed: int = 0, log=print) -> Path:
    """A policy folder of ``task``: the gait at the amplitudes of ``LADDER`` (expert: ``gait``'s
    own), each file with its measured greedy and sampled returns over ``episodes`` episodes,
    and the folder's ``provenance.json``."""
    from dataclasses import replace

    check_task(task)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise EnvError(f"gait ladder of {task}: episodes must be a positive integer, got {episodes!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for order, (name, fraction) in enumerate(LADDER.items()):
        level = replace(gait, amplitude=gait.amplitude * fraction)
        record = {"task": task, "env_steps": order, "kind": "travelling_wave",
                  "greedy": play_gait(task, level, episodes, seed, greedy=True),
                  "sampled": play_gait(task, level, episodes, seed, greedy=False),
                  "config": {"task": task, "gait": asdict(level)}, "gait": asdict(level)}
        tmp = out / f".{name}{SUFFIX}.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(out / f"{name}{SUFFIX}")
        log(f"{name}: amplitude {level.amplitude:.2f}, greedy return "
            f"{record['greedy']['return']:.1f}, sampled {record['sampled']['return']:.1f}")
    write_provenance(out, task)
    return out


def write_provenance(out: Path, task: str) -> None:
    """``provenance.json`` of a gait folder: what each level is and scored (as ``marl behavior
    export`` writes for trained policies)."""
    levels = {}
    for f in sorted(out.glob(f"*{SUFFIX}")):
        _, record = load_gait(f)
        levels[f.name.removesuffix(SUFFIX)] = {k: record[k] for k in ("env_steps", "greedy", "sampled", "gait")}
    record = {"task": task, "kind": "travelling_wave", "module": "marl.behavior.gait",
              "command": f"marl behavior gait {task} --out {out}", "snapshots": levels}
    (out / "provenance.json").write_text(json.dumps(record, indent=2))
