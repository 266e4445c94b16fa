"""Offscreen rendering of multi-agent MuJoCo robots, for the skill replays of ``marl visualize``:
choosing an OpenGL backend that works here (EGL or OSMesa, fixed when mujoco is imported) and
drawing recorded states with each agent's bodies painted in its colour."""

from __future__ import annotations

import os

import numpy as np

from envs.core import EnvError
from envs.mamujoco import MaMuJoCoEnv


def render_states(env: MaMuJoCoEnv, qpos: np.ndarray, qvel: np.ndarray,
                  agent_rgba: np.ndarray, width: int = 480, height: int = 320) -> np.ndarray:
    """Frames ``[T, height, width, 3]`` uint8 of ``env``'s robot at the states ``qpos [T, nq]``,
    ``qvel [T, nv]``, seen by a camera tracking the torso, with the bodies each agent's
    joints move painted ``agent_rgba [T, n_agents, 4]`` (RGBA in 0..1; the torso keeps its
    colour). Needs offscreen OpenGL, chosen when mujoco is imported (``offscreen_gl``)."""
    import mujoco

    model = env.physics_model
    agent_rgba = np.asarray(agent_rgba, dtype=np.float32)
    if qpos.shape[1:] != (model.nq,) or qvel.shape[1:] != (model.nv,) or \
            agent_rgba.shape != (len(qpos), env.info.n_agents, 4):
        raise EnvError(f"{env.info.task}: render_states needs qpos [T, {model.nq}], qvel "
                       f"[T, {model.nv}] and agent_rgba [T, {env.info.n_agents}, 4]; got "
                       f"{qpos.shape}, {qvel.shape}, {agent_rgba.shape}")
    try:
        renderer = mujoco.Renderer(model, height, width)
    except Exception as exc:  # no OpenGL context (the backend fixed at import)
        raise EnvError(f"{env.info.task}: cannot render offscreen ({exc}); set MUJOCO_GL="
                       "egl or osmesa before mujoco is imported (Debian: apt-get install "
                       "libosmesa6)") from None
    def body_id(name: str) -> int:  # the layout names an unnamed body "body<id>"
        found = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        return found if found >= 0 else int(name.removeprefix("body"))

    geoms = []
    for joints in env.layout.agent_joints:
        bodies = [body_id(name) for j in joints for name in env.layout.joint_bodies[j]]
        geoms.append(np.flatnonzero(np.isin(model.geom_bodyid, bodies)))
    data, original = mujoco.MjData(model), model.geom_rgba.copy()
    data.qpos[:] = qpos[0]
    mujoco.mj_forward(model, data)
    robot = model.geom_bodyid > 0  # not the floor: frame the robot, whatever its length
    span = np.ptp(data.geom_xpos[robot], axis=0).max() + 2 * model.geom_rbound[robot].max()
    camera = mujoco.MjvCamera()
    camera.type, camera.trackbodyid = mujoco.mjtCamera.mjCAMERA_TRACKING, 1
    camera.distance, camera.elevation, camera.azimuth = max(1.5, 1.6 * span), -20.0, 90.0
    frames = np.empty((len(qpos), height, width, 3), dtype=np.uint8)
    try:
        for t in range(len(qpos)):
            data.qpos[:], data.qvel[:] = qpos[t], qvel[t]
            mujoco.mj_forward(model, data)
            for a, ids in enumerate(geoms):
                model.geom_rgba[ids] = agent_rgba[t, a]
            renderer.update_scene(data, camera)
            frames[t] = renderer.render()
    finally:
        model.geom_rgba[:] = original
        renderer.close()
    return frames


def offscreen_gl() -> str | None:
    """The MuJoCo offscreen OpenGL backend that works on this machine: ``MUJOCO_GL`` when set,
    else the first of ``egl`` and ``osmesa`` that renders a frame in a fresh process (mujoco
    fixes its backend when it is imported, and a missing library makes that import fail, so
    each is tried in a subprocess), or None. Cached per process."""
    global _OFFSCREEN
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    if _OFFSCREEN is None:
        import subprocess
        import sys

        probe = ("import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom "
                 "size=\"1\"/></worldbody></mujoco>'); r = mujoco.Renderer(m, 8, 8); "
                 "r.update_scene(mujoco.MjData(m)); r.render()")
        _OFFSCREEN = ""
        for backend in ("egl", "osmesa"):
            env = {**os.environ, "MUJOCO_GL": backend, "PYOPENGL_PLATFORM": backend}
            done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                                  timeout=120)
            if done.returncode == 0:
                _OFFSCREEN = backend
                break
    return _OFFSCREEN or None


_OFFSCREEN: str | None = None


def use_offscreen_gl() -> str | None:
    """Choose ``offscreen_gl()``'s backend for this process, which must happen before mujoco is
    imported. Returns the backend that ``render_states`` will use, or None when none works here
    or mujoco was already imported without one."""
    import sys

    backend = offscreen_gl()
    if backend and "mujoco" not in sys.modules:
        os.environ["MUJOCO_GL"] = backend
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)  # as the probe ran
    return backend if backend and os.environ.get("MUJOCO_GL") == backend else None
