"""Multi-agent MuJoCo robots (gymnasium-robotics 1.4.2 ``mamujoco_v1``) behind the batched API.

Task names are ``Robot-NxK``: N agents, each driving K joints (K segments for the ManySegment
robots). The built-in partitions of ``mamujoco_v1`` keep their exact agent split; any other NxK of
a fixed robot is a *custom factorization*: the robot's actuated joints, in its single-agent node
order, cut into N consecutive groups of K and passed to ``mamujoco_v1`` as ``agent_factorization``.

Why a step does not call ``ParallelEnv.step``: ``mamujoco_v1`` builds each agent's observation in
Python, node by node, which halves the throughput of cheap robots. But every agent observation is
a sub-vector of the global state (``map_global_state_to_local_observations``; the state is the
Gymnasium ``*-v5`` observation). So each pettingzoo env is built once (graph, partition, agent
observation mapping), its Gymnasium env is stepped directly, and the observations of all agents of
all copies come out of one numpy gather from the stacked states. Construction checks that this
gather reproduces ``mamujoco_v1``'s own observations.

Deliberate differences from ``mamujoco_v1``:

* ``ManySegmentAnt``'s joint graph is rebuilt here. Upstream (1.4.2) gives every segment but the
  last wrong qpos/qvel ids (other segments' joints or the root's coordinates, e.g. ``hip1_0``
  reads the root's x with 2 segments), drives each hip1 through the hip2 actuator and vice versa,
  and links segments through deep copies of nodes: segment s sees segment s-1 but not s+1, and an
  agent with two segments observes its own hips twice. Here every joint reads its own qpos/qvel
  and drives its own actuator, and neighbouring segments see each other.
* ``Walker2d`` observations take joint velocities from the state, where Gymnasium clips them to
  [-10, 10] (``mamujoco_v1`` clips them for Hopper but not for Walker2d).

Why this file is long (about 650 lines): it is one simulator adapter in three parts that only
make sense together: the layout read from the MuJoCo model (which joint, body and state entry
each agent observes and drives), the corrected ManySegmentAnt graph, and the batched env with
its throughput benchmark. Rendering lives in ``envs.mamujoco_render``.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import re
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from envs.core import EnvError, EnvInfo, EpisodeStats, LoopedEnv, TimeStep, check_num_envs

ROOT = -1  # entity id of the robot's unactuated root (the torso's free or planar joints)
OBS_KINDS = ("qpos", "qvel", "cfrc_ext")  # MujocoLayout.state_kind indexes this
CFRC_DIM = 6  # cfrc_ext entries per body: torque (3) and force (3)

# Robots with a fixed body and their mamujoco_v1 built-in partitions (obsk.get_parts_and_edges).
BUILTIN_PARTITIONS: dict[str, tuple[str, ...]] = {
    "HalfCheetah": ("2x3", "6x1"),
    "Ant": ("2x4", "2x4d", "4x2"),
    "Walker2d": ("2x3",),
    "Hopper": ("3x1",),
    "Swimmer": ("2x1",),
}
ROBOT_JOINTS = {"HalfCheetah": 6, "Ant": 8, "Walker2d": 6, "Hopper": 3, "Swimmer": 2}  # actuated
# Robots generated with N*K segments (any N, K >= 1) and the Gymnasium env they are loaded into.
SEGMENT_ROBOTS: dict[str, str] = {"ManySegmentAnt": "Ant-v5", "ManySegmentSwimmer": "Swimmer-v5"}
ROBOTS: tuple[str, ...] = (*BUILTIN_PARTITIONS, *SEGMENT_ROBOTS)
OPTIONS: dict[str, Any] = {"agent_obsk": 1}  # accepted options and their defaults

_MAP_RE = re.compile(r"^(?P<robot>[A-Za-z0-9]+)-(?P<n>\d+)x(?P<k>\d+)(?P<suffix>[a-z]*)$")
_MAP_HELP = "'Robot-NxK' (e.g. HalfCheetah-2x3, Ant-2x4d, HalfCheetah-3x2, ManySegmentAnt-3x2)"


def _upstream():
    """gymnasium-robotics' MaMuJoCo modules, imported only when a task is built. Its import
    prints a notice about the Adroit hand's rewards to stderr (gymnasium-robotics 1.4.2, through
    farama_notifications); marl uses no Adroit task, and a user's error line must stay one line."""
    with contextlib.redirect_stderr(io.StringIO()):
        from gymnasium_robotics.envs.multiagent_mujoco import (
            many_segment_ant,
            many_segment_swimmer,
            mujoco_multi,
            obsk,
        )

    segment_modules = {
        "ManySegmentAnt": many_segment_ant,
        "ManySegmentSwimmer": many_segment_swimmer,
    }
    return mujoco_multi, obsk, segment_modules


# ----------------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class MujocoLayout:
    """What every state and observation entry physically is, per agent.

    Entities are the actuated joints (ids index ``joint_names``) and the root (``ROOT``: the
    torso's unactuated joints). Each state entry is one (entity, kind, component): ``kind``
    indexes ``OBS_KINDS``; ``component`` is 0 for a joint's qpos/qvel, the coordinate within the
    root's qpos/qvel for the root (e.g. 2 = z of a free joint, whose x and y are not observed),
    and ``CFRC_DIM * b + axis`` for the cfrc_ext of the entity's ``b``-th body. A body belongs to
    the joint that moves it, a jointless (welded) body to the first joint below it, and the
    torso to the root, so features do not depend on the partition. Agent observations are
    sub-vectors of the state (``obs_state_index``), and the ``obs_*`` properties follow from it.
    """

    robot: str
    partition: str  # "2x3", "2x4d", ...
    agent_obsk: int
    joint_names: tuple[str, ...]  # actuated joints, in the robot's node order
    joint_bodies: tuple[tuple[str, ...], ...]  # per joint: its bodies (the one it moves first)
    root_joint_names: tuple[str, ...]
    root_bodies: tuple[str, ...]
    agent_joints: tuple[tuple[int, ...], ...]  # per agent: controlled joint ids, in action order
    joint_hops: tuple[tuple[int, ...], ...]  # [agent][joint]: hops from the agent's joints, -1 none
    obs_state_index: tuple[tuple[int, ...], ...]  # [agent][obs index] -> state index
    # what each joint is, whatever the partition (``joint_identity``): its place on the body at
    # rest, ahead of (+1) or behind (-1) the torso and on its left (+1) or right (-1), 0 on
    # the axis; its depth, the actuated joints from the torso to it (1 at the torso); and
    # whether no actuated joint lies below it
    joint_side: tuple[tuple[int, int], ...] = ()
    joint_depth: tuple[int, ...] = ()
    joint_leaf: tuple[bool, ...] = ()
    state_entity: tuple[int, ...] = ()  # [state index] -> joint id or ROOT
    state_kind: tuple[int, ...] = ()
    state_component: tuple[int, ...] = ()

    @property
    def n_agents(self) -> int:
        return len(self.agent_joints)

    @property
    def obs_dims(self) -> tuple[int, ...]:
        return tuple(len(index) for index in self.obs_state_index)

    @property
    def act_dims(self) -> tuple[int, ...]:
        return tuple(len(joints) for joints in self.agent_joints)

    @property
    def state_dim(self) -> int:
        return len(self.state_entity)

    def _per_obs(self, per_state: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(per_state[i] for i in index) for index in self.obs_state_index)

    @property
    def obs_entity(self) -> tuple[tuple[int, ...], ...]:
        """[agent][obs index] -> joint id, or ROOT."""
        return self._per_obs(self.state_entity)

    @property
    def obs_kind(self) -> tuple[tuple[int, ...], ...]:
        """[agent][obs index] -> index into OBS_KINDS."""
        return self._per_obs(self.state_kind)

    @property
    def obs_component(self) -> tuple[tuple[int, ...], ...]:
        """[agent][obs index] -> component (see the class doc)."""
        return self._per_obs(self.state_component)

    def describe_obs(self, agent: int) -> list[str]:
        """Readable names of one agent's observation entries, e.g. ``"bthigh.qvel"``."""
        names = []
        for index in self.obs_state_index[agent]:
            entity, kind = self.state_entity[index], OBS_KINDS[self.state_kind[index]]
            component = self.state_component[index]
            owner = "root" if entity == ROOT else self.joint_names[entity]
            if kind == "cfrc_ext":
                bodies = self.root_bodies if entity == ROOT else self.joint_bodies[entity]
                body, axis = divmod(component, CFRC_DIM)
                names.append(f"{owner}.cfrc_ext[{bodies[body]}][{axis}]")
            elif entity == ROOT:
                names.append(f"root.{kind}[{component}]")
            else:
                names.append(f"{owner}.{kind}")
        return names

    def summary(self) -> dict:
        return {
            "robot": self.robot,
            "partition": self.partition,
            "agent_obsk": self.agent_obsk,
            "n_joints": len(self.joint_names),
            "obs_dims": list(self.obs_dims),
            "act_dims": list(self.act_dims),
            "agent_joints": [[self.joint_names[j] for j in joints] for joints in self.agent_joints],
        }


def _body_owners(model: Any, actuated: dict[int, int]) -> list[int]:
    """Entity owning each body's cfrc_ext: the joint that moves it; a welded (jointless) body
    goes with the first joint below it (Ant's leg mounts -> their hips); the torso -> ROOT."""
    owners = [ROOT] * model.nbody
    for body in range(model.nbody - 1, 0, -1):  # children have larger ids than their parents
        first = int(model.body_jntadr[body])
        joints = range(first, first + int(model.body_jntnum[body]))
        own = [actuated[j] for j in joints if j in actuated]
        if own:
            owners[body] = min(own)
        elif not joints:
            below = [
                owners[child]
                for child in range(body + 1, model.nbody)
                if model.body_parentid[child] == body and owners[child] != ROOT
            ]
            owners[body] = min(below, default=ROOT)
    return owners


def _joint_identity(model: Any, robot_joints: Sequence[int]):
    """(side, depth, leaf) of each actuated joint (``MujocoLayout``), from the model at rest:
    the side is the sign of the joint's body offset from the torso along x and y, 0 within 5 %
    of the robot's extent."""
    import mujoco

    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    carrier = [int(model.jnt_bodyid[j]) for j in robot_joints]
    torso = next(b for b in range(1, model.nbody) if int(model.body_parentid[b]) == 0)
    offset = data.xpos[carrier, :2] - data.xpos[torso, :2]
    extent = max(float(np.abs(data.xpos[1:, :2] - data.xpos[torso, :2]).max()), 1e-9)
    side = np.where(np.abs(offset) < 0.05 * extent, 0, np.sign(offset)).astype(int)

    def ancestors(body: int) -> set[int]:
        out = set()
        while body > 0:
            out.add(body)
            body = int(model.body_parentid[body])
        return out

    above = [ancestors(b) for b in carrier]
    depth = tuple(sum(carrier[k] in above[j] for k in range(len(carrier))) for j in range(len(carrier)))
    leaf = tuple(not any(carrier[j] in above[k] for k in range(len(carrier)) if k != j)
                 for j in range(len(carrier)))
    return tuple((int(x), int(y)) for x, y in side), depth, leaf


def _build_layout(
    robot: str,
    partition: str,
    agent_obsk: int,
    model: Any,
    observation_structure: dict[str, int],
    robot_nodes: Sequence[Any],
    parts: Sequence[Sequence[Any]],
    edges: Sequence[Any],
    obs_state_index: Sequence[np.ndarray],
) -> MujocoLayout:
    """Label every state entry from the MuJoCo model (not from upstream's node lists, which
    attach a body's features to whichever node of the agent lists it first)."""
    # Long on purpose: one pass over the robot's joints that fills every table of the layout.
    actuator_joint = [int(model.actuator_trnid[a, 0]) for a in range(model.nu)]

    def model_joint(node: Any) -> int:
        joint = actuator_joint[node.act_ids]
        if node.qpos_ids % model.nq != model.jnt_qposadr[joint] or (
            node.qvel_ids % model.nv != model.jnt_dofadr[joint]
        ):
            raise RuntimeError(
                f"{robot}: node {node.label} drives joint {model.joint(joint).name} but reads "
                f"qpos {node.qpos_ids} / qvel {node.qvel_ids}; factorization and model disagree"
            )
        return joint

    robot_joints = [model_joint(node) for node in robot_nodes]
    if sorted(robot_joints) != sorted(set(actuator_joint)) or len(robot_joints) != model.nu:
        raise RuntimeError(f"{robot}: the node list does not cover each actuator exactly once")
    actuated = {joint: jid for jid, joint in enumerate(robot_joints)}  # model joint -> joint id
    joint_id = {id(node): actuated[model_joint(node)] for part in parts for node in part}
    root_joints = [j for j in range(model.njnt) if j not in actuated]

    # Which joint each qpos / dof entry belongs to; the root's must come first (they do for
    # every robot here), so a root coordinate is simply its qpos / dof index.
    qpos_joint = np.searchsorted(model.jnt_qposadr, np.arange(model.nq), side="right") - 1
    dof_joint = np.asarray(model.dof_jntid)
    for entries in (qpos_joint, dof_joint):
        is_root = ~np.isin(entries, list(actuated))
        if is_root.any() and not is_root[: is_root.sum()].all():
            raise RuntimeError(f"{robot}: root coordinates are not the first qpos/qvel entries")

    owners = _body_owners(model, actuated)
    entity_bodies: dict[int, list[int]] = {}
    for body in range(1, model.nbody):
        entity_bodies.setdefault(owners[body], []).append(body)
    for entity, bodies in entity_bodies.items():  # the body the joint moves (or the torso) first
        joints = root_joints if entity == ROOT else [robot_joints[entity]]
        carriers = {int(model.jnt_bodyid[j]) for j in joints}
        bodies.sort(key=lambda b: (b not in carriers, b))

    # The state is [qpos[skipped:], qvel, cfrc_ext of bodies 1..] (Gymnasium *-v5 layout).
    structure = dict(observation_structure)
    skipped, n_qpos = structure.pop("skipped_qpos"), structure.pop("qpos")
    n_qvel, n_cfrc = structure.pop("qvel"), structure.pop("cfrc_ext", 0)
    cfrc_sizes = (0, CFRC_DIM * (model.nbody - 1))
    if any(structure.values()) or n_qvel != model.nv or n_cfrc not in cfrc_sizes:
        raise RuntimeError(f"{robot}: unsupported state structure {observation_structure}")
    qpos, qvel, cfrc_ext = (OBS_KINDS.index(kind) for kind in ("qpos", "qvel", "cfrc_ext"))
    state: list[tuple[int, int, int]] = []
    for q in range(skipped, skipped + n_qpos):
        j = int(qpos_joint[q])
        state.append((actuated[j], qpos, 0) if j in actuated else (ROOT, qpos, q))
    for d in range(n_qvel):
        j = int(dof_joint[d])
        state.append((actuated[j], qvel, 0) if j in actuated else (ROOT, qvel, d))
    for e in range(n_cfrc):
        body, axis = divmod(e, CFRC_DIM)
        owner = owners[body + 1]
        slot = entity_bodies[owner].index(body + 1)
        state.append((owner, cfrc_ext, CFRC_DIM * slot + axis))

    # Hop distances on the joint graph (breadth-first search from each agent's joints).
    neighbours: dict[int, set[int]] = {j: set() for j in range(len(robot_joints))}
    for edge in edges:
        members = {joint_id[id(node)] for node in edge.nodes}
        for j in members:
            neighbours[j] |= members - {j}
    agent_joints = tuple(tuple(joint_id[id(node)] for node in part) for part in parts)
    hops = []
    for joints in agent_joints:
        dist = dict.fromkeys(joints, 0)
        queue = deque(joints)
        while queue:
            j = queue.popleft()
            for n in neighbours[j] - dist.keys():
                dist[n] = dist[j] + 1
                queue.append(n)
        hops.append(tuple(dist.get(j, -1) for j in range(len(robot_joints))))

    def body_names(bodies: list[int]) -> tuple[str, ...]:
        return tuple(model.body(b).name or f"body{b}" for b in bodies)

    side, depth, leaf = _joint_identity(model, robot_joints)

    return MujocoLayout(
        robot=robot,
        partition=partition,
        agent_obsk=agent_obsk,
        joint_names=tuple(model.joint(j).name for j in robot_joints),
        joint_bodies=tuple(body_names(entity_bodies.get(j, [])) for j in range(len(robot_joints))),
        root_joint_names=tuple(model.joint(j).name for j in root_joints),
        root_bodies=body_names(entity_bodies.get(ROOT, [])),
        agent_joints=agent_joints,
        joint_hops=tuple(hops),
        obs_state_index=tuple(tuple(int(i) for i in index) for index in obs_state_index),
        joint_side=side,
        joint_depth=depth,
        joint_leaf=leaf,
        state_entity=tuple(s[0] for s in state),
        state_kind=tuple(s[1] for s in state),
        state_component=tuple(s[2] for s in state),
    )


# ------------------------------------------------------------------------ task construction
@dataclass(frozen=True)
class MujocoTask:
    """A parsed map name (no simulator needed)."""

    robot: str
    n_agents: int
    per_agent: int  # joints per agent (fixed robots) or segments per agent (ManySegment robots)
    partition: str  # "2x3", "2x4d", ...

    @property
    def builtin(self) -> bool:
        """One of mamujoco_v1's own partitions (else a custom factorization)."""
        return self.partition in BUILTIN_PARTITIONS.get(self.robot, ())

    @property
    def n_segments(self) -> int:
        return self.n_agents * self.per_agent if self.robot in SEGMENT_ROBOTS else 0


# joints (action entries) per segment of the segmented robots
SEGMENT_JOINTS = {"ManySegmentAnt": 4, "ManySegmentSwimmer": 1}


def layout_from_name(map_name: str, options: dict) -> dict:
    """What a dataset records about a MuJoCo task that its name tells: agents and their largest
    action size. Observation and state sizes need the MuJoCo model (None here)."""
    mt = parse_map(map_name)
    n_actions = (mt.per_agent * SEGMENT_JOINTS[mt.robot] if mt.robot in SEGMENT_ROBOTS
                 else mt.per_agent)
    return {"robot": mt.robot, "partition": mt.partition, "n_agents": mt.n_agents,
            "n_enemies": 0, "obs_dim": None, "state_dim": None, "n_actions": n_actions,
            "action_type": "continuous", "episode_limit": None}


def parse_map(map_name: str) -> MujocoTask:
    """Parse and check a ``Robot-NxK`` map name, or raise EnvError saying what is accepted."""
    match = _MAP_RE.match(map_name) if isinstance(map_name, str) else None
    if match is None:
        raise EnvError(f"mamujoco map name {map_name!r} is not {_MAP_HELP}; robots: {list(ROBOTS)}")
    robot, n, k, suffix = match["robot"], int(match["n"]), int(match["k"]), match["suffix"]
    task = MujocoTask(robot, n, k, f"{n}x{k}{suffix}")
    if robot not in ROBOTS:
        close = difflib.get_close_matches(robot, ROBOTS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EnvError(f"unknown mamujoco robot {robot!r}{hint}; robots: {list(ROBOTS)}")
    if n < 1 or k < 1:
        raise EnvError(f"{map_name}: N and K in NxK must be at least 1")
    if robot in SEGMENT_ROBOTS:
        if suffix:
            raise EnvError(f"{map_name}: {robot} takes plain NxK (any N, K >= 1), e.g. {robot}-3x2")
        return task
    if task.builtin:
        return task
    n_joints = ROBOT_JOINTS[robot]
    splits = [f"{a}x{n_joints // a}" for a in range(1, n_joints + 1) if n_joints % a == 0]
    accepted = sorted(set(BUILTIN_PARTITIONS[robot]) | set(splits))
    if suffix:
        raise EnvError(
            f"{map_name}: partition {task.partition!r} is not built in for {robot}; "
            f"accepted: {accepted}"
        )
    if n * k != n_joints:
        raise EnvError(
            f"{map_name}: {robot} has {n_joints} actuated joints, so N x K must equal "
            f"{n_joints} (got {n} x {k} = {n * k}); accepted: {accepted}"
        )
    return task


def _many_segment_ant_graph(obsk: Any, n_segs: int) -> tuple[list[Any], list[Any], list[Any]]:
    """The ManySegmentAnt joint graph with correct ids (see the module doc). Joint, qpos and
    actuator order per segment is hip1, ankle1, hip2, ankle2, after the 7-qpos/6-dof free root;
    bodies and their [-1, 1] contact-force clipping are upstream's."""
    Node, HyperEdge = obsk.Node, obsk.HyperEdge

    def clip(_body: int, forces: Any) -> list[float]:
        return np.clip(forces, -1, 1).tolist()

    nodes: list[Any] = []
    edges: list[Any] = []
    for s in range(n_segs):
        torso, front, aux1, foot1, back, aux2, foot2 = range(1 + 7 * s, 8 + 7 * s)
        qpos, dof, act = 7 + 4 * s, 6 + 4 * s, 4 * s
        segment_bodies = [(torso, front), (front, aux1, foot1), (torso, back), (back, aux2, foot2)]
        hip1, ankle1, hip2, ankle2 = (
            Node(f"{name}_{s}", qpos + i, dof + i, act + i, bodies=bodies, body_fn=clip)
            for i, (name, bodies) in enumerate(
                zip(("hip1", "ankle1", "hip2", "ankle2"), segment_bodies)
            )
        )
        edges += [HyperEdge(ankle1, hip1), HyperEdge(ankle2, hip2), HyperEdge(hip1, hip2)]
        if s:  # the hips of consecutive segments are neighbours, in both directions
            edges.append(HyperEdge(nodes[-4], nodes[-2], hip1, hip2))
        nodes += [hip1, ankle1, hip2, ankle2]
    root = Node(
        "root",
        0,
        0,
        None,
        extra_obs={"qpos": lambda data: data.qpos[2:7], "qvel": lambda data: data.qvel[:6]},
    )
    return nodes, edges, [root]


def _robot_graph(obsk: Any, robot: str, n_segs: int) -> tuple[list[Any], list[Any], list[Any]]:
    """All of a robot's joint nodes in its node order (the single-agent partition), its edges
    and its global nodes."""
    if robot == "ManySegmentAnt":
        return _many_segment_ant_graph(obsk, n_segs)
    conf = f"1x{n_segs}" if robot in SEGMENT_ROBOTS else None
    (nodes,), edges, globals_ = obsk.get_parts_and_edges(robot, conf)
    return list(nodes), edges, globals_


def _make_gym_envs(robot: str, n_segs: int, count: int, segment_modules: dict) -> list[Any]:
    """``count`` single-agent Gymnasium envs of the robot (with their 1000-step TimeLimit).
    Segment robots get their generated model from a private temporary file: upstream writes it
    into site-packages under a fixed name, which races between processes."""
    import gymnasium

    if robot not in SEGMENT_ROBOTS:
        return [gymnasium.make(f"{robot}-v5") for _ in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{robot}_{n_segs}.xml")
        segment_modules[robot].gen_asset(n_segs=n_segs, asset_path=path)
        return [gymnasium.make(SEGMENT_ROBOTS[robot], xml_file=path) for _ in range(count)]


# ------------------------------------------------------------------------------ environment
def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class MaMuJoCoEnv(LoopedEnv):
    """``num_envs`` copies of a MaMuJoCo task, stepped in one Python loop over copies.

    Observations ``[N, n_agents, obs_dim]`` (agents with smaller observations zero-padded), state
    ``[N, state_dim]`` (``env.state()``, the Gymnasium observation), shared reward, actions
    ``[N, n_agents, n_actions]`` in [-1, 1] of which agent ``a`` uses its first
    ``layout.act_dims[a]``. ``terminated``: the robot fell (Hopper, Walker2d, Ant);
    ``truncated``: 1000 steps. ``info`` has ``episode_return``, ``episode_length``,
    ``final_obs`` and ``final_state``; the ``final_*`` entries hold every copy's successor
    observation of this step (for copies that did not finish it equals ``obs``).
    """

    def __init__(self, map_name: str, num_envs: int = 1, seed: int = 0, **options: Any):
        # Long on purpose: builds the upstream envs, then the gather tables that replace their
        # observation code.
        self.num_envs = check_num_envs(num_envs)
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise EnvError(
                f"mamujoco: unknown option(s) {unknown}; accepted options: {OPTIONS} (defaults)"
            )
        agent_obsk = options.get("agent_obsk", OPTIONS["agent_obsk"])
        if not _is_int(agent_obsk) or agent_obsk < 0:
            raise EnvError(
                f"mamujoco option agent_obsk must be an integer >= 0 (joints observed up to that "
                f"many hops away), got {agent_obsk!r}"
            )
        agent_obsk = int(agent_obsk)
        if not _is_int(seed):
            raise EnvError(f"seed must be an integer, got {seed!r}")
        self._first_seed: int | None = int(seed)  # used by the first reset() without a seed

        task = parse_map(map_name)
        robot, partition, n_segs = task.robot, task.partition, task.n_segments
        mujoco_multi, obsk, segment_modules = _upstream()
        robot_nodes, edges, globals_ = _robot_graph(obsk, robot, n_segs)
        if robot in ROBOT_JOINTS and len(robot_nodes) != ROBOT_JOINTS[robot]:
            raise RuntimeError(f"{robot}: gymnasium-robotics lists {len(robot_nodes)} joints")
        if task.builtin:
            parts, edges, globals_ = obsk.get_parts_and_edges(robot, partition)
        else:  # custom factorization: N consecutive groups of the robot's nodes
            size = len(robot_nodes) // task.n_agents
            parts = [tuple(robot_nodes[i * size : (i + 1) * size]) for i in range(task.n_agents)]
        factorization = {"partition": parts, "edges": edges, "globals": globals_}

        self._robot_and_segments = (robot, n_segs)
        self._gym_envs = _make_gym_envs(robot, n_segs, self.num_envs, segment_modules)
        # The pettingzoo envs own the factorization and its observation mapping; stepping goes
        # through their Gymnasium envs (see the module doc).
        self._envs = [
            mujoco_multi.MultiAgentMujocoEnv(
                robot, partition, agent_obsk, agent_factorization=factorization, gym_env=gym_env
            )
            for gym_env in self._gym_envs
        ]
        reference = self._envs[0]
        agents = reference.possible_agents
        obs_state_index = [reference.observation_factorization[agent] for agent in agents]
        unwrapped = self._gym_envs[0].unwrapped
        self.layout = _build_layout(
            robot, partition, agent_obsk, unwrapped.model, unwrapped.observation_structure,
            robot_nodes, parts, edges, obs_state_index,
        )
        layout = self.layout
        n_agents, state_dim = layout.n_agents, layout.state_dim
        obs_dim, n_actions = max(layout.obs_dims), max(layout.act_dims)

        self._obs_gather = obs_gather(layout)
        # Gymnasium action[:, u] = actions[:, _act_agent[u], _act_slot[u]].
        self._act_agent = np.zeros(unwrapped.model.nu, dtype=np.int64)
        self._act_slot = np.zeros(unwrapped.model.nu, dtype=np.int64)
        for a, part in enumerate(parts):
            for slot, node in enumerate(part):
                self._act_agent[node.act_ids], self._act_slot[node.act_ids] = a, slot
        self._check_against_upstream()

        self.info = EnvInfo(
            task=f"mamujoco:{map_name}",
            family="mamujoco",
            map_name=map_name,
            backend="mujoco",
            n_agents=n_agents,
            obs_dim=obs_dim,
            state_dim=state_dim,
            action_type="continuous",
            n_actions=n_actions,
            episode_limit=int(self._gym_envs[0].spec.max_episode_steps),
            layout=layout,
            n_enemies=0,
            options={"agent_obsk": agent_obsk},
        )
        self._stats = EpisodeStats(self.num_envs)

    def _check_against_upstream(self) -> None:
        """The gathered observations must equal ``mamujoco_v1``'s own at a real state."""
        state, _ = self._gym_envs[0].reset(seed=self._first_seed)
        upstream = self._envs[0]._get_obs()
        for a, agent in enumerate(self._envs[0].possible_agents):
            mine = state[list(self.layout.obs_state_index[a])]
            if not np.array_equal(mine, upstream[agent]):
                raise RuntimeError(
                    f"{self.layout.robot}-{self.layout.partition}: gathered observation of "
                    f"{agent} differs from mamujoco_v1's; the observation mapping is wrong"
                )

    def _observe(self, states: np.ndarray) -> np.ndarray:
        return gather_obs(states, self._obs_gather)

    def reset(self, seed: int | None = None) -> TimeStep:
        """Copy ``i`` restarts with seed ``seed + i``. Without a seed the first reset uses the
        constructor's seed and later ones continue each copy's random stream."""
        if seed is None:
            seed, self._first_seed = self._first_seed, None
        elif not _is_int(seed):
            raise EnvError(f"seed must be an integer or None, got {seed!r}")
        return self._started([env.reset(seed=None if seed is None else int(seed) + i)[0]
                              for i, env in enumerate(self._gym_envs)])

    # ------------------------------------------------------------------ LoopedEnv's hooks
    def _copy_actions(self, actions: np.ndarray) -> np.ndarray:
        actions = np.clip(self._check_continuous_actions(actions), -1.0, 1.0)
        return actions[:, self._act_agent, self._act_slot]  # [N, nu]: the robots' actions

    def _step_copy(self, i: int, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        state, reward, terminated, truncated, _ = self._gym_envs[i].step(action)
        return state, reward, terminated, truncated, {}

    def _restart_copy(self, i: int) -> np.ndarray:
        return self._gym_envs[i].reset()[0]

    def _arrays(self, raws: list) -> tuple[np.ndarray, np.ndarray, None]:
        states = np.stack(raws)
        return self._observe(states), states.astype(np.float32), None

    @property
    def control_dt(self) -> float:
        """Simulated seconds per env step (the frame skip times MuJoCo's time step)."""
        return float(self._gym_envs[0].unwrapped.dt)

    @property
    def physics_model(self):
        """The robot's ``mujoco.MjModel`` (what ``envs.mamujoco_render`` draws)."""
        return self._gym_envs[0].unwrapped.model

    def physics_snapshot(self) -> dict[str, np.ndarray]:
        """Every copy's MuJoCo state now: ``qpos [N, nq]`` and ``qvel [N, nv]`` (to render a
        replay later with ``envs.mamujoco_render.render_states``)."""
        datas = [env.unwrapped.data for env in self._gym_envs]
        return {"qpos": np.stack([d.qpos.copy() for d in datas]),
                "qvel": np.stack([d.qvel.copy() for d in datas])}

    def close(self) -> None:
        for env in self._envs:
            env.close()


def obs_gather(layout: MujocoLayout) -> np.ndarray:
    """``[n_agents, obs_dim]``: obs[:, a, i] = state[:, table[a, i]]; index state_dim (past
    the state) reads a zero, the padding of agents with smaller observations."""
    table = np.full((layout.n_agents, max(layout.obs_dims)), layout.state_dim, dtype=np.int64)
    for a, index in enumerate(layout.obs_state_index):
        table[a, : len(index)] = index
    return table


def gather_obs(states: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Every agent's observation ``[N, n_agents, obs_dim]`` from states ``[N, state_dim]``."""
    padded = np.concatenate([states, np.zeros((len(states), 1))], axis=1).astype(np.float32)
    return padded[:, table]


class PartitionBridge:
    """Play one partition of a robot (``target``) with a policy of another (``source``).

    Every partition's observations are sub-vectors of the same state, and every partition's
    actions drive the same joints. So a policy trained for ``source``'s agents reads their
    observations from the target env's state (``observe``), and its per-agent actions are
    regrouped, joint by joint, into ``target``'s agents (``actions``): the robot moves exactly
    as it would under the source partition. This gives every partition of a robot the expert
    of one partition (``marl collect``)."""

    def __init__(self, source: MujocoLayout, target: MujocoLayout):
        if source.robot != target.robot or source.state_dim != target.state_dim:
            raise EnvError(f"a {source.robot}-{source.partition} policy cannot drive "
                           f"{target.robot}-{target.partition}: partitions of one robot only")
        self.source, self.target = source, target
        self._gather = obs_gather(source)
        # each joint's (agent, slot) in the source, and each target (agent, slot)'s joint
        n_joints = len(source.joint_names)
        self._source_agent = np.zeros(n_joints, dtype=np.int64)
        self._source_slot = np.zeros(n_joints, dtype=np.int64)
        for a, joints in enumerate(source.agent_joints):
            self._source_agent[list(joints)], self._source_slot[list(joints)] = a, range(len(joints))
        width = max(target.act_dims)
        self._target_joint = np.zeros((target.n_agents, width), dtype=np.int64)
        self._target_used = np.zeros((target.n_agents, width), dtype=bool)
        for a, joints in enumerate(target.agent_joints):
            self._target_joint[a, : len(joints)] = joints
            self._target_used[a, : len(joints)] = True

    def observe(self, states: np.ndarray) -> np.ndarray:
        """``states [N, state_dim]`` -> the source agents' observations ``[N, n, obs_dim]``."""
        return gather_obs(states, self._gather)

    def actions(self, source_actions: np.ndarray) -> np.ndarray:
        """The source agents' actions ``[N, n_source, k]`` -> the target agents' ``[N, n_target,
        k']`` (padded slots 0)."""
        joints = source_actions[:, self._source_agent, self._source_slot]  # [N, n_joints]
        return np.where(self._target_used, joints[:, self._target_joint], 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------- benchmark
def bench_mamujoco(tasks: Sequence[str], num_envs: int = 8, steps: int = 2000) -> dict[str, dict]:
    """Env-steps/s of ``MaMuJoCoEnv`` (``steps`` batched steps of ``num_envs`` copies, random
    actions, auto-resets included) next to the robot's bare single-agent Gymnasium env doing the
    same number of env-steps. ``tasks`` are map names (``"HalfCheetah-2x3"``; a ``mamujoco:``
    prefix is allowed)."""
    _, _, segment_modules = _upstream()
    rng = np.random.default_rng(0)
    results = {}
    for task in tasks:
        map_name = task.split(":")[-1]
        with MaMuJoCoEnv(map_name, num_envs=num_envs, seed=0) as env:
            robot_and_segments = env._robot_and_segments
            pool = rng.uniform(-1, 1, (16, num_envs, env.info.n_agents, env.info.n_actions))
            pool = pool.astype(np.float32)
            env.reset()
            start = time.perf_counter()
            for t in range(steps):
                env.step(pool[t % 16])
            multi = steps * num_envs / (time.perf_counter() - start)

        (single,) = _make_gym_envs(*robot_and_segments, 1, segment_modules)
        flat_pool = rng.uniform(-1, 1, (16, single.action_space.shape[0]))
        single.reset(seed=0)
        start = time.perf_counter()
        for t in range(steps * num_envs):
            _, _, terminated, truncated, _ = single.step(flat_pool[t % 16])
            if terminated or truncated:
                single.reset()
        gym_rate = steps * num_envs / (time.perf_counter() - start)
        single.close()
        results[map_name] = {
            "num_envs": num_envs,
            "env_steps_per_s": round(multi, 1),
            "gym_single_agent_steps_per_s": round(gym_rate, 1),
        }
    return results
