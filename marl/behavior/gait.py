"""A scripted swimming gait: the behaviour policy of the many-segment swimmers.

MAPPO plateaus on the swimmers far from swimming (docs/datasets.md). A wave of bending that
runs from the tail to the head swims every chain of segments, and this gait makes one by state
feedback alone, a reflex chain:

* the tail joint (the deepest, ``MujocoLayout.joint_depth``) is a pacemaker: its reference angle
  is ``amplitude * tanh(angular velocity / velocity_scale)``, a swing onward in the direction it
  already turns, which sustains an oscillation (negative damping) from any state but rest;
* every other joint tracks ``follow_gain`` times the angle of the joint below it (the next
  toward the tail), so each joint follows the one behind it a little late and the wave travels
  toward the head, which drives these swimmers forward (+x);
* each reference is tracked by the PD law ``kp * (reference - angle) - kd * angular velocity``
  (``kp_tail`` at the tail), clipped to the action range.

Each joint's action reads its own angle and velocity and the angle of its neighbour toward the
tail, all in its agent's observation (MaMuJoCo shows an agent its neighbours' angles), and no
clock: the gait is a function of what each agent observes, the same for every partition and
number of segments, so a learner that imitates it exactly swims exactly as it does. A wave
timed by the episode's clock, the gait this replaced, is not: a policy of observations must make
its own oscillation, which the clocked wave never had to (measured in docs/datasets.md).

A gait policy is a JSON file ``NAME.gait.json`` in a policy folder, with the provenance fields
of a snapshot's record (``task``, ``env_steps`` as its order, ``greedy`` and ``sampled``
results, ``config``) and its ``gait`` parameters. The quality ladder of a folder scales the
amplitude and the follow gain together (``marl behavior gait``). Sampled actions add Gaussian
noise of ``noise`` to the PD action (medium-replay), as a Gaussian policy would.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from envs.core import EnvError

SUFFIX = ".gait.json"
KIND = "reflex_chain"
# chains of segments, joints about one axis (Gymnasium's 3-segment Swimmer is not driven:
# docs/datasets.md)
ROBOTS = ("ManySegmentSwimmer",)


@dataclass(frozen=True)
class ReflexChain:
    amplitude: float = 1.0  # radians the tail joint swings toward
    velocity_scale: float = 4.0  # rad/s of the tail's turning at which its swing is tanh(1) of the amplitude
    follow_gain: float = 1.5  # a joint's reference over the angle of the joint behind it
    kp: float = 0.6
    kp_tail: float = 1.0
    kd: float = 0.05
    noise: float = 0.3  # std of the action noise when sampling

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise EnvError(f"gait parameter {name} must be a finite number, got {value!r}")
        if min(self.amplitude, self.follow_gain, self.noise) < 0 or self.velocity_scale <= 0:
            raise EnvError(f"gait amplitude, follow_gain and noise must be >= 0 and velocity_scale "
                           f"> 0, got {self}")

    def level(self, fraction: float) -> "ReflexChain":
        """The gait at ``fraction`` of its strength: amplitude and follow gain scaled together
        (scaling the amplitude alone leaves a chain with gain above 1 swimming on its own)."""
        return replace(self, amplitude=self.amplitude * fraction, follow_gain=self.follow_gain * fraction)


class GaitDriver:
    """Chooses every copy's actions for one task's layout from the state's joint angles and
    velocities (each joint reads only values its agent observes)."""

    def __init__(self, gait: ReflexChain, info, greedy: bool = True,
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
        depth = np.asarray(layout.joint_depth)
        self.tail = int(np.argmax(depth))
        # the joint each joint follows: the one a step deeper down the chain (the tail: itself;
        # ROBOTS are single chains, depths 1..n_joints)
        self.behind = np.array([np.flatnonzero(depth == d + 1)[0] if d < n_joints else j
                                for j, d in enumerate(depth)])
        self.kp = np.full(n_joints, gait.kp)
        self.kp[self.tail] = gait.kp_tail
        # joint -> (agent, slot) of the env's actions [N, n_agents, n_actions]
        self.agent = np.zeros(n_joints, np.int64)
        self.slot = np.zeros(n_joints, np.int64)
        for a, joints in enumerate(layout.agent_joints):
            self.agent[list(joints)], self.slot[list(joints)] = a, np.arange(len(joints))
        for j in range(n_joints):  # a decentralised policy: every value a joint reads is its agent's
            seen = layout.obs_state_index[self.agent[j]]
            if not {self.angle[j], self.velocity[j], self.angle[self.behind[j]]} <= set(seen):
                raise EnvError(f"a swimming gait needs each agent to observe its joints' angles and "
                               f"velocities and the angle of the next joint toward the tail; "
                               f"{info.task}'s agent {self.agent[j]} does not see those of "
                               f"{layout.joint_names[j]} (agent_obsk >= 1 shows them)")
        self.shape = (info.n_agents, info.n_actions)
        self.gait, self.greedy = gait, greedy
        self.rng = rng or np.random.default_rng(0)

    def __call__(self, ts) -> np.ndarray:
        g = self.gait
        angle, velocity = ts.state[:, self.angle], ts.state[:, self.velocity]
        reference = g.follow_gain * angle[:, self.behind]
        reference[:, self.tail] = g.amplitude * np.tanh(velocity[:, self.tail] / g.velocity_scale)
        torque = self.kp * (reference - angle) - g.kd * velocity
        if not self.greedy:
            torque = torque + self.rng.normal(0.0, g.noise, torque.shape)
        actions = np.zeros((ts.state.shape[0],) + self.shape, np.float32)
        actions[:, self.agent, self.slot] = np.clip(torque, -1.0, 1.0)
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


def load_gait(path: str | Path) -> tuple[ReflexChain, dict]:
    """The gait of a ``.gait.json`` policy file, and the file's record."""
    try:
        record = json.loads(Path(path).read_text())
        if record.get("kind") != KIND:
            raise ValueError(f"kind {record.get('kind')!r}, expected {KIND!r}")
        gait = ReflexChain(**record["gait"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EnvError(f"{path} is not a gait policy (a JSON record of kind {KIND!r} with 'gait' "
                       f"parameters {list(asdict(ReflexChain()))}): {exc}") from None
    return gait, record


def driver(path: str | Path, env, greedy: bool, seed: int) -> GaitDriver:
    """A gait policy file as the chooser of ``env``'s actions."""
    gait, _ = load_gait(path)
    check_task(env.info.task)
    return GaitDriver(gait, env.info, greedy, np.random.default_rng(seed))


def play_gait(task: str, gait: ReflexChain, episodes: int, seed: int = 0,
              greedy: bool = True) -> dict:
    """Mean return and length of ``episodes`` episodes of ``task`` played by ``gait``."""
    import envs

    env = envs.make(task, num_envs=episodes, seed=seed)
    choose = GaitDriver(gait, env.info, greedy, np.random.default_rng(seed))
    outcomes = envs.play(env, choose, seed=seed)
    env.close()
    return {"return": float(outcomes.returns.mean()), "length": float(outcomes.lengths.mean()),
            "episodes": episodes}


# fractions of the expert's strength (``ReflexChain.level``); their returns: docs/datasets.md
LADDER = {"poor": 0.0, "replay_1": 0.5, "replay_2": 0.6, "medium": 0.7, "expert": 1.0}


def write_ladder(task: str, out: str | Path, gait: ReflexChain = ReflexChain(),
                 episodes: int = 16, seed: int = 0, log=print) -> Path:
    """A policy folder of ``task``: the gait at the strengths of ``LADDER`` (expert: ``gait``
    itself), each file with its measured greedy and sampled returns over ``episodes`` episodes,
    and the folder's ``provenance.json``."""
    check_task(task)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise EnvError(f"gait ladder of {task}: episodes must be a positive integer, got {episodes!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for order, (name, fraction) in enumerate(LADDER.items()):
        level = gait.level(fraction)
        record = {"task": task, "env_steps": order, "kind": KIND,
                  "greedy": play_gait(task, level, episodes, seed, greedy=True),
                  "sampled": play_gait(task, level, episodes, seed, greedy=False),
                  "config": {"task": task, "gait": asdict(level)}, "gait": asdict(level)}
        tmp = out / f".{name}{SUFFIX}.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(out / f"{name}{SUFFIX}")
        log(f"{name}: strength {fraction:.2f}, greedy return "
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
    record = {"task": task, "kind": KIND, "module": "marl.behavior.gait",
              "command": f"marl behavior gait {task} --out {out}", "snapshots": levels}
    (out / "provenance.json").write_text(json.dumps(record, indent=2))
