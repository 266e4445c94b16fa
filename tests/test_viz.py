"""`marl visualize`: figures, replays, stable clusters, labels that match the model, projector."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tiny_run_of
from envs.mamujoco_render import use_offscreen_gl
from marl.runs import RunError, load_run_model
from marl.viz import SkillClusters, VizError, record, visualize


@pytest.fixture(scope="module")
def drawn(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("viz")
    summary = visualize(tiny_run, "smac:12m", episodes=2, out=out / "a", clusters=3,
                        map_tasks=["smac:3m"], log=lambda s: None)
    return summary, out


def test_figures_and_replay_are_made(drawn):
    summary, out = drawn
    a = out / "a"
    for name in ("timeline_ep0", "timeline_ep1", "skill_map_pca", "skill_map_tsne"):
        with Image.open(a / f"{name}.png") as img:
            assert img.size[0] >= 800 and img.size[1] >= 300, name
        assert (a / f"{name}.svg").stat().st_size > 10_000
    lengths = summary["episode_lengths"]
    labels = np.load(a / "timeline_labels.npy")
    assert labels.shape[:2] == (2, max(lengths)) and (labels[0, lengths[0]:] == -1).all()
    with Image.open(a / "replay_ep0.gif") as gif:
        assert gif.size == (600, 600) and gif.n_frames == lengths[0]
    if shutil.which("ffprobe"):  # ffmpeg is installed: the MP4 has every frame too
        count = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
             "stream=nb_read_frames", "-of", "csv=p=0", str(a / "replay_ep0.mp4")],
            capture_output=True, text=True, check=True).stdout
        assert int(count) == lengths[0]
    else:
        assert not (a / "replay_ep0.mp4").exists()
    assert summary["clusters"]["k"] == 3
    sil = json.loads((a / "skill_maps.json").read_text())["silhouette_by_task"]
    assert set(sil) == {"common", "task"} and all(-1 <= v <= 1 for v in sil.values())


def test_timeline_labels_match_the_model_recomputed(drawn, tiny_run):
    _, out = drawn
    labels = np.load(out / "a" / "timeline_labels.npy")
    clusters = SkillClusters(np.array(json.loads((out / "a" / "clusters.json").read_text())
                                      ["centers"]))
    _, model, _, _ = load_run_model(tiny_run)
    rollout = record(model, "smac:12m", 2, seed=0)
    from marl.entity.smac import parse_smac_obs
    from envs.smac import parse_map

    layout = parse_map("12m")
    for e in range(2):
        for t in range(int(rollout.lengths[e])):
            view = parse_smac_obs(torch.from_numpy(rollout.obs[e, t]), layout)
            common = model.skills(view)["common"].numpy()
            want = np.where(rollout.acting[e, t], clusters.predict(common), -1)
            assert np.array_equal(labels[e, t], want), (e, t)


def test_same_seed_same_clusters(drawn, tiny_run):
    _, out = drawn
    visualize(tiny_run, "smac:12m", episodes=2, out=out / "b", clusters=3,
              map_tasks=["smac:3m"], log=lambda s: None)
    assert (out / "a" / "clusters.json").read_text() == (out / "b" / "clusters.json").read_text()
    assert np.array_equal(np.load(out / "a" / "timeline_labels.npy"),
                          np.load(out / "b" / "timeline_labels.npy"))


def test_projector_files_load_back(drawn):
    _, out = drawn
    tensors = sorted((out / "a" / "tb").rglob("tensors.tsv"))
    assert len(tensors) == 2  # common and task-specific skills
    assert (out / "a" / "tb" / "projector_config.pbtxt").exists()
    for path in tensors:
        x = np.loadtxt(path, delimiter="\t")
        meta = (path.parent / "metadata.tsv").read_text().strip().splitlines()
        assert meta[0].split("\t") == ["task", "agent", "step"]
        assert len(meta) - 1 == len(x) and x.shape[1] == 16
        assert {line.split("\t")[0] for line in meta[1:]} == {"smac:12m", "smac:3m"}


def test_odis_discrete_skills_are_drawn(tiny_data, tmp_path):
    run = tiny_run_of(tiny_data, tmp_path / "odis", algo="odis", updates=2)
    summary = visualize(run, "smac:4m", episodes=1, out=tmp_path / "viz", log=lambda s: None)
    assert summary["clusters"] == {"k": 3, "discrete": True}
    assert (tmp_path / "viz" / "timeline_ep0.png").exists()
    assert (tmp_path / "viz" / "replay_ep0.gif").exists()


def test_bad_input_is_one_clear_error(tiny_data, tiny_run, tmp_path, capsys):
    from marl.cli import main

    bc = tiny_run_of(tiny_data, tmp_path / "bc", algo="bc", updates=1)
    with pytest.raises(VizError, match="bc run: it has no skills"):
        visualize(bc, "smac:3m", log=lambda s: None)
    with pytest.raises(RunError, match="family 'mpe'"):
        visualize(tiny_run, "mpe:spread-3", log=lambda s: None)
    assert main(["visualize", str(tiny_run), "--task", "smoc:3m"]) == 2
    assert "unknown task family" in capsys.readouterr().err


def test_mujoco_run_gets_agent_and_joint_timelines(tmp_path):
    """A MuJoCo HiSSD run (random-action data): skill and joint-level timelines, skill maps,
    and, where offscreen OpenGL works, a rendered replay of every n-th step."""
    from helpers import write_random
    from marl.data.paths import dataset_path

    tasks = ["mamujoco:Hopper-3x1", "mamujoco:Walker2d-2x3"]
    taskset = tmp_path / "tiny-mujoco.yaml"
    taskset.write_text("name: tiny-mujoco\nfamily: mamujoco\ndescription: test\n"
                       f"train_tasks: [{', '.join(tasks)}]\ntest_tasks: [{tasks[0]}]\n"
                       "qualities: [expert]\nenv_options: {}\n")
    for i, task in enumerate(tasks):
        path = dataset_path(tmp_path / "data", task, "expert")
        path.parent.mkdir(parents=True)
        write_random(path, task, episodes=6, seed=i, quality="expert")
    run = tiny_run_of((taskset, tmp_path / "data"), tmp_path / "run", updates=2)
    summary = visualize(run, "mamujoco:Hopper-3x1", episodes=1, out=tmp_path / "viz",
                        clusters=2, replay_frames=10, log=lambda s: None)
    files = summary["files"]
    assert len(files["timelines"]) == 2 and len(files["joint_timelines"]) == 2
    if use_offscreen_gl() is None:
        assert "replay" not in files and "offscreen" in summary["replay_skipped"]
    else:
        length = summary["episode_lengths"][0]
        with Image.open(files["replay"][0]) as gif:
            assert gif.n_frames == len(range(0, length, -(-length // 10))) <= 10
            assert gif.size[0] >= 400 and gif.size[1] >= 300
    with Image.open(tmp_path / "viz" / "joint_timeline_ep0.png") as img:
        assert img.size[0] >= 800
    assert set(summary["silhouette_by_task"]) == {"common", "task"}
