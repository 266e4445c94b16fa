"""A plain (non-editable) install carries what the quickstart needs: the task sets, the shipped
behaviour policies and the quickstart config are package data, found beside the installed code
rather than in a source checkout."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_plain_install_finds_task_sets_policies_and_the_quickstart_config(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                            "--no-build-isolation", "--target", str(target), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    probe = ("import json, envs, marl, marl.quickstart as q\n"
             "from envs.tasksets import list_tasksets, load_taskset\n"
             "from marl.collect import list_snapshots\n"
             "ts = load_taskset('marine-easy')\n"
             "print(json.dumps({'marl': marl.__file__, 'envs': envs.__file__,\n"
             "  'tasksets': list_tasksets(), 'config': str(q.CONFIG),\n"
             "  'config_exists': q.CONFIG.is_file(), 'policies': str(marl.SHIPPED_POLICIES),\n"
             "  'snapshots': [len(list_snapshots(marl.SHIPPED_POLICIES / t.replace(':', '_')))\n"
             "                for t in ts.train_tasks]}))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": ""}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    found = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    for key in ("marl", "envs", "config", "policies"):
        assert found[key].startswith(str(target)), (key, found[key])  # not the checkout
    assert found["config_exists"]
    assert set(found["tasksets"]) >= {"marine-easy", "marine-hard", "stalker-zealot", "spread"}
    assert all(n >= 3 for n in found["snapshots"])  # poor, medium, expert for 3m, 5m, 10m
