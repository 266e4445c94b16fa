"""The ``marl`` command.

    marl envs list                         families, backends and task sets
    marl envs check TASK [--backend B] [--num-envs N] [--steps S] [--seed S]
                                           build TASK, print its layout and measured env-steps/s
    marl behavior train TASK --out DIR [--steps N] [--seed S] [--enemy-attack-mode M]
                                           [--enemy-reaction P]
                                           train (or resume) a MAPPO behaviour policy
    marl behavior export RUN --out DIR     keep the snapshots data qualities need (to ship)
    marl behavior gait TASK --out DIR      a scripted swimming gait's quality ladder (swimmers)
    marl collect --task TASK --policy DIR --quality Q --episodes N --out FILE [--env-option K=V]
                                           record a dataset from behaviour-policy snapshots
    marl datasets build TASKSET --quality Q [--episodes N] [--policies DIR] [--out DIR]
                                           datasets of every training task of a task set
    marl datasets inspect PATH             the dataset card (statistics, histogram, checksum)
    marl train --config YAML [key=value ...] [--out RUN_DIR] | --resume RUN_DIR
                                           offline training (HiSSD), checkpoints, TensorBoard
    marl quickstart [--out DIR]            data -> HiSSD -> zero-shot table and skill figure
    marl evaluate RUN_DIR [--checkpoint last|best|PATH] [--taskset T | --tasks A,B] [--seeds ...]
                                           zero-shot evaluation: JSON, marl-eval JSON, Markdown
    marl compare RUN_DIR ... [--out FILE]  algorithms x tasks, mean and 95 % CI over seeds
    marl visualize RUN_DIR --task TASK [--episodes N] [--out DIR]
                                           skill timelines, skill maps, replays, TensorBoard

User mistakes (a bad task name, backend or option) end with one ``marl: error: ...`` line and
exit status 2, never a traceback from the simulator underneath.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np

from marl import SHIPPED_POLICIES


def _envs_list(args: argparse.Namespace) -> None:
    from envs import FAMILIES
    from envs.tasksets import list_tasksets, load_taskset

    print("Task families (task names are family:map):")
    for fam in FAMILIES.values():
        backends = ", ".join(f"{b}{' (default)' if b == fam.default_backend else ''}"
                             for b in fam.backends)
        print(f"  {fam.name:<9} {fam.description}\n"
              f"            backends: {backends}\n            maps: {fam.map_help}")
    print("\nTask sets (envs/tasksets/):")
    for name in list_tasksets():
        task_set = load_taskset(name)
        print(f"  {name:<18} {task_set.family:<9} train {len(task_set.train_tasks)}, unseen "
              f"{len(task_set.unseen_tasks)}: {task_set.description}")


def measure_steps_per_second(env, steps: int, seed: int = 0) -> tuple[float, dict]:
    """Step ``env`` with uniformly random actions for ``steps`` batched steps (after one warm-up
    step, which may compile); return env-steps/s (copies x steps / s) and episode statistics."""
    from envs.core import random_actions

    rng = np.random.default_rng(seed)
    info = env.info

    def act(ts):
        if info.action_type == "discrete":
            return random_actions(ts.avail_actions, rng)
        return rng.uniform(-1, 1, (env.num_envs, info.n_agents, info.n_actions)).astype(np.float32)

    ts = env.step(act(env.reset(seed)))
    returns, lengths, wins = [], [], []
    start = time.perf_counter()
    for _ in range(steps):
        ts = env.step(act(ts))
        done = ts.done
        if done.any():
            returns += ts.info["episode_return"][done].tolist()
            lengths += ts.info["episode_length"][done].tolist()
            if "battle_won" in ts.info:
                wins += ts.info["battle_won"][done].tolist()
    elapsed = time.perf_counter() - start
    stats = {"episodes": len(returns)}
    if returns:
        stats.update(mean_return=float(np.mean(returns)), mean_length=float(np.mean(lengths)))
    if wins:
        stats["win_rate"] = float(np.mean(wins))
    return steps * env.num_envs / elapsed, stats


def _envs_check(args: argparse.Namespace) -> None:
    import envs

    start = time.perf_counter()
    env = envs.make(args.task, backend=args.backend, num_envs=args.num_envs, seed=args.seed)
    build_s = time.perf_counter() - start
    with env:
        print(f"{args.task} on backend {env.info.backend}, {env.num_envs} copies "
              f"(built in {build_s:.1f} s, compilation included)")
        for key, value in env.info.summary().items():
            print(f"  {key:<24} {value}")
        rate, stats = measure_steps_per_second(env, args.steps, args.seed)
    print(f"random actions: {rate:,.0f} env-steps/s over {args.steps} batched steps; "
          f"episodes {json.dumps(stats)}")


def _discount(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: a discount must lie in (0, 1]")
    return value


def _positive(kind: type, expected: str):
    """An argparse type: ``kind(text)`` if it is above 0, otherwise one error saying so."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"{text}: expected {expected}")
        return value
    return parse


_positive_int = _positive(int, "a whole number of at least 1")
_positive_float = _positive(float, "a number above 0")


def _behavior_train(args: argparse.Namespace) -> None:
    from marl.behavior import train
    from marl.behavior.config import BehaviorConfig

    options = {key: value for key, value in (("enemy_attack_mode", args.enemy_attack_mode),
                                              ("enemy_reaction", args.enemy_reaction))
               if value is not None} or None
    flags = dict(task=args.task, total_env_steps=args.steps, seed=args.seed,
                 num_envs=args.num_envs, snapshot_every=args.snapshot_every,
                 eval_episodes=args.eval_episodes, threads=args.threads, env_options=options,
                 entropy_coef=args.entropy_coef, gamma=args.gamma, lr=args.lr,
                 anneal_lr=args.anneal_lr, hidden=args.hidden, engine=args.engine,
                 algo=args.algo, record_replay=args.record_replay, recurrent=args.recurrent)
    cfg = _merge_overrides(BehaviorConfig(**flags), args.overrides, "marl behavior train")
    meta = train(cfg, args.out, log=lambda line: print(line, flush=True))
    print(f"last snapshot: update {meta['update']}, greedy {meta['greedy']}, sampled {meta['sampled']}")


def _merge_overrides(cfg, overrides: list[str], command: str):
    """``cfg`` (a dataclass) with ``key=value`` overrides merged through OmegaConf, which
    checks keys and types; one ConfigError naming the key and the closest valid ones."""
    import difflib

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from marl.config import ConfigError

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{command}: {item!r} is not of the form key=value")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cfg), OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        keys = [f.name for f in dataclasses.fields(cfg)]
        close = difflib.get_close_matches(key, keys, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{command}: {key!r}: {str(exc).splitlines()[0]}{hint}") from None
    return OmegaConf.to_object(merged)


def _behavior_export(args: argparse.Namespace) -> None:
    from marl.collect import export_policies

    record = export_policies(args.run, args.out, command=args.command_line,
                             medium_run=args.medium_run, medium_command=args.medium_command_line)
    for name, snap in record["snapshots"].items():
        print(f"{name:<9} env steps {snap['env_steps']:>9,}  acts {snap['acts']:<7}  "
              f"greedy {snap['greedy']}  sampled {snap['sampled']}")


def _behavior_gait(args: argparse.Namespace) -> None:
    from marl.behavior.gait import ReflexChain, write_ladder

    gait = ReflexChain(**{k: getattr(args, k) for k in ("amplitude", "velocity_scale", "follow_gain")})
    write_ladder(args.task, args.out, gait, episodes=args.episodes)


def _collect(args: argparse.Namespace) -> None:
    import yaml

    from envs import EnvError
    from marl.collect import collect

    options = None
    if args.env_option:
        options = {}
        for item in args.env_option:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise EnvError(f"--env-option {item!r}: expected KEY=VALUE, e.g. enemy_reaction=0.8")
            options[key] = yaml.safe_load(value)
    out = collect(args.task, args.policy, args.quality, args.episodes, args.out, seed=args.seed,
                  num_envs=args.num_envs, env_options=options, sampling=args.sampling)
    print(f"wrote {out}")


def _datasets_build(args: argparse.Namespace) -> None:
    from marl.collect import build_taskset

    build_taskset(args.taskset, args.quality, args.episodes, args.policies, args.out,
                  seed=args.seed, num_envs=args.num_envs, sampling=args.sampling,
                  log=lambda line: print(line, flush=True))


def _train(args: argparse.Namespace) -> None:
    from pathlib import Path

    from marl.config import load_config
    from marl.train import TrainError, train

    if args.resume:
        if not (Path(args.resume) / "config.yaml").is_file():
            raise TrainError(f"{args.resume} is not a run folder (no config.yaml)")
        ignored = [o for o in args.overrides if not o.startswith("updates=")]
        if ignored or args.config:
            raise TrainError(f"--resume {args.resume}: a resumed run keeps the config it was "
                             f"started with; only updates=N may change (given: "
                             f"{' '.join(ignored + (['--config ' + args.config] if args.config else []))})")
        train(load_config(Path(args.resume) / "config.yaml", args.overrides), args.resume,
              resume=True)
        return
    cfg = load_config(args.config, args.overrides)
    if args.config is None:  # say what runs: the defaults are a full-size run
        print(f"marl train: no --config; training the built-in defaults: {cfg.algo} on "
              f"{cfg.data.taskset} ({cfg.data.quality}) for {cfg.updates} updates "
              "(configs: experiments/hissd/*.yaml)", file=sys.stderr, flush=True)
    out = args.out or (f"runs/{cfg.algo}/{Path(str(cfg.data.taskset)).stem}-"
                       f"{cfg.data.quality}-seed{cfg.seed}")
    train(cfg, out)


def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from marl.evaluate import evaluate_run, markdown_table, write_report

    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    report = evaluate_run(args.run, args.checkpoint, tasks=tasks, taskset=args.taskset,
                          episodes=args.episodes, seeds=args.seeds, workers=args.workers,
                          device=args.device)
    out = Path(args.out) if args.out else Path(args.run) / "eval"
    tensorboard = out / "tb" if args.out else Path(args.run) / "tb"  # nothing into RUN with --out
    # a run with failed jobs never replaces a complete report: it writes NAME-partial.*
    name = f"{args.name}-partial" if report["errors"] else args.name
    paths = write_report(report, out, tensorboard_dir=tensorboard, name=name)
    print(markdown_table(report))
    print(f"wrote {paths['json']}, {paths['marl_eval']}, {paths['markdown']} "
          f"({report['seconds']:.0f} s)")
    if report["errors"]:
        print(f"marl evaluate: {len(report['errors'])} job(s) failed: " + "; ".join(
            f"{e['task']} seed {e['seed']}: {e['error']}" for e in report["errors"]),
            file=sys.stderr)
        return 1
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    import time

    from marl.diagnose import diagnose_run, summary

    start = time.perf_counter()
    report = diagnose_run(args.run, args.checkpoint, episodes=args.episodes, seed=args.seed,
                          out=args.out, data=args.data)
    print(summary(report))
    print(f"wrote {report['path']} ({time.perf_counter() - start:.0f} s)")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from marl.compare import compare, load_report, markdown, plot
    from marl.evaluate import EvalError

    if args.plot and not args.out:
        raise EvalError("--plot writes OUT.png and OUT.svg: give --out")
    labels = args.labels.split(",") if args.labels else None
    result = compare([load_report(run, args.name) for run in args.runs], labels, args.baseline)
    table = markdown(result)
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(table + "\n")
        out.with_suffix(".json").write_text(json.dumps(result, indent=2))
        print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
        if args.plot:
            print("wrote " + " and ".join(str(p) for p in plot(result, out)))
    return 0


def _visualize(args: argparse.Namespace) -> int:
    from marl.viz import visualize

    map_tasks = [t.strip() for t in args.map_tasks.split(",")] if args.map_tasks else None
    visualize(args.run, args.task, episodes=args.episodes, out=args.out,
              checkpoint=args.checkpoint, clusters=args.clusters, seed=args.seed,
              map_tasks=map_tasks, replay_frames=args.replay_frames)
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from marl.quickstart import quickstart

    quickstart(args.out, episodes=args.episodes, updates=args.updates,
               eval_episodes=args.eval_episodes)
    return 0


def _datasets_inspect(args: argparse.Namespace) -> int:
    from marl.data.card import inspect_dataset

    card, problem = inspect_dataset(args.path, task=args.task)
    print(card)
    return 1 if problem else 0  # a file that does not verify is a failure, card or not


def build_parser() -> argparse.ArgumentParser:
    # Long on purpose: a declarative list of every command and its options, one after another.
    parser = argparse.ArgumentParser(prog="marl", description=__doc__.split("\n\n")[0])
    groups = parser.add_subparsers(dest="group", required=True)

    envs_parser = groups.add_parser("envs", help="environments: list families, check a task")
    envs_cmds = envs_parser.add_subparsers(dest="command", required=True)
    envs_cmds.add_parser("list", help="families, backends and task sets").set_defaults(func=_envs_list)
    check = envs_cmds.add_parser("check", help="build a task, print its layout and speed")
    check.add_argument("task", help="family:map, e.g. smac:3m, mamujoco:HalfCheetah-2x3, mpe:spread-3")
    check.add_argument("--backend", default=None, help="backend (default: the family's default)")
    check.add_argument("--num-envs", type=_positive_int, default=64, help="copies stepped together (64)")
    check.add_argument("--steps", type=_positive_int, default=200, help="batched steps to time (200)")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(func=_envs_check)

    behavior = groups.add_parser("behavior", help="behaviour policies that make offline datasets")
    behavior_cmds = behavior.add_subparsers(dest="command", required=True)
    from marl.behavior.config import ENGINES, BehaviorConfig

    default = {f.name: f.default for f in dataclasses.fields(BehaviorConfig)}  # defined once
    btrain = behavior_cmds.add_parser(
        "train", help="train (or resume) a MAPPO behaviour policy",
        epilog="Defaults come from marl.behavior.config.BehaviorConfig; --set changes any of "
               "its settings.")
    btrain.add_argument("task", help="e.g. smac:3m, mpe:spread-3")
    btrain.add_argument("--out", required=True, help="run folder (re-running resumes it)")
    btrain.add_argument("--steps", type=_positive_int, default=default["total_env_steps"],
                        help="total env steps (%(default)s)")
    btrain.add_argument("--seed", type=int, default=default["seed"])
    btrain.add_argument("--num-envs", type=_positive_int, default=default["num_envs"],
                        help="copies stepped together (%(default)s)")
    btrain.add_argument("--snapshot-every", type=_positive_int, default=default["snapshot_every"],
                        help="updates between snapshots (%(default)s)")
    btrain.add_argument("--eval-episodes", type=_positive_int, default=default["eval_episodes"],
                        help="episodes per snapshot eval (%(default)s)")
    btrain.add_argument("--threads", type=_positive_int, default=default["threads"],
                        help="torch/XLA threads (%(default)s: run 2 jobs on 2 cores)")
    btrain.add_argument("--hidden", type=_positive_int, default=default["hidden"],
                        help="width of the actor's and critic's layers (%(default)s; snapshots "
                             "record it)")
    btrain.add_argument("--lr", type=_positive_float, default=default["lr"],
                        help="Adam step size (%(default)s)")
    btrain.add_argument("--anneal-lr", action="store_true", default=default["anneal_lr"],
                        help="lower the step size linearly to 0 at --steps; resuming a plateaued "
                             "run with more --steps and this flag fine-tunes it")
    btrain.add_argument("--entropy-coef", type=float, default=default["entropy_coef"],
                        help="weight of the entropy bonus (%(default)s)")
    btrain.add_argument("--gamma", type=_discount, default=default["gamma"],
                        help="discount (%(default)s; swimmers need about 0.999: their reward is "
                             "a slow forward drift)")
    btrain.add_argument("--enemy-attack-mode", choices=("closest", "random", "spread"),
                        default=None,
                        help="SMAC on SMAX: the scripted enemy's targeting (default closest; "
                             "spread: new targets to the least-shot ally, decided for the team)")
    btrain.add_argument("--enemy-reaction", type=float, default=None,
                        help="SMAC on SMAX: probability that an enemy unit re-decides on a step "
                             "(default 1; marine-hard uses 0.8)")
    btrain.add_argument("--engine", choices=ENGINES, default=default["engine"],
                        help="auto (default): jax for SMAC (rollout and PPO compiled with SMAX), "
                             "torch for MPE and MuJoCo; a resumed run keeps its engine")
    btrain.add_argument("--algo", choices=("mappo", "ippo"), default=default["algo"],
                        help="mappo: one centralised value V(s); ippo: per-agent V(o_i) (jax engine)")
    btrain.add_argument("--recurrent", action="store_true", default=default["recurrent"],
                        help="jax engine: a GRU cell on the actor's context, trained through time")
    btrain.add_argument("--record-replay", type=int, default=default["record_replay"],
                        metavar="STEPS",
                        help="jax engine: write the training rollouts to RUN/replay/ for at most "
                             "STEPS env steps, stopping once a snapshot passes the medium band; "
                             "`marl collect --quality medium-replay --policy RUN` then uses them")
    btrain.add_argument("--set", nargs="+", action="extend", default=[], dest="overrides",
                        metavar="KEY=VALUE",
                        help="any other BehaviorConfig setting, e.g. --set rollout_steps=256 "
                             "clip=0.1")
    btrain.set_defaults(func=_behavior_train)
    export = behavior_cmds.add_parser("export", help="keep the snapshots data qualities need")
    export.add_argument("run", help="a `marl behavior train` folder")
    export.add_argument("--out", required=True, help="e.g. marl/policies/smac_3m")
    export.add_argument("--command-line", default="", help="the training command, for provenance")
    export.add_argument("--medium-run", default=None,
                        help="a denser-snapshot run of the same task to take medium/replay from")
    export.add_argument("--medium-command-line", default="",
                        help="the --medium-run's training command, for provenance")
    export.set_defaults(func=_behavior_export)
    from marl.behavior.gait import ReflexChain

    wave = ReflexChain()
    gait = behavior_cmds.add_parser(
        "gait", help="a scripted swimming gait's quality ladder (marl.behavior.gait)",
        description="Writes poor, replay_1, replay_2, medium and expert .gait.json files: a "
                    "reflex chain (state feedback) at rising strengths, each with its measured "
                    "returns.")
    gait.add_argument("task", help="e.g. mamujoco:ManySegmentSwimmer-3x2")
    gait.add_argument("--out", required=True, help="e.g. marl/policies/mamujoco_ManySegmentSwimmer-3x2")
    gait.add_argument("--amplitude", type=float, default=wave.amplitude,
                      help="the expert's tail swing (radians)")
    gait.add_argument("--velocity-scale", type=float, default=wave.velocity_scale,
                      help="the tail's turning speed (rad/s) at which its swing is tanh(1) of the amplitude")
    gait.add_argument("--follow-gain", type=float, default=wave.follow_gain,
                      help="a joint's reference over the angle of the joint behind it")
    gait.add_argument("--episodes", type=int, default=16, help="episodes measured per level")
    gait.set_defaults(func=_behavior_gait)

    col = groups.add_parser("collect", help="record a dataset from behaviour-policy snapshots")
    col.add_argument("--task", required=True)
    col.add_argument("--policy", required=True, help="a behaviour run or marl/policies/<task> folder")
    col.add_argument("--quality", required=True, help="expert, medium, medium-replay, medium-expert, poor")
    col.add_argument("--episodes", type=_positive_int, default=2000)
    col.add_argument("--out", required=True, help="HDF5 file to write (re-running resumes)")
    col.add_argument("--seed", type=int, default=0)
    col.add_argument("--num-envs", type=_positive_int, default=64)
    col.add_argument("--sampling", default=None,
                     help="how the policy acts: greedy, sampled or epsilon:E (default: the "
                          "quality's own: greedy, medium-replay sampled); recorded in the file")
    col.add_argument("--env-option", action="append", metavar="KEY=VALUE",
                     help="simulator option, repeatable (e.g. enemy_reaction=0.8); default: the "
                          "options the policy was trained with")
    col.set_defaults(func=_collect)

    data = groups.add_parser("datasets", help="build and inspect offline datasets")
    data_cmds = data.add_subparsers(dest="command", required=True)
    build = data_cmds.add_parser("build", help="datasets of every training task of a task set")
    build.add_argument("taskset", help="e.g. marine-hard, or a task-set YAML path")
    build.add_argument("--quality", required=True)
    build.add_argument("--episodes", type=_positive_int, default=2000)
    build.add_argument("--policies", default=str(SHIPPED_POLICIES), help="folder of shipped policies")
    build.add_argument("--out", default="datasets/data", help="dataset root (git-ignored)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--num-envs", type=_positive_int, default=64)
    build.add_argument("--sampling", default=None,
                     help="how the policy acts: greedy, sampled or epsilon:E (default: the "
                          "quality's own: greedy, medium-replay sampled); recorded in the file")
    build.set_defaults(func=_datasets_build)
    inspect = data_cmds.add_parser("inspect", help="print a dataset card and verify the checksum")
    inspect.add_argument("path")
    inspect.add_argument("--task", default=None, help="task of an ODIS file whose path does not tell")
    inspect.set_defaults(func=_datasets_inspect)

    train = groups.add_parser("train", help="offline training (HiSSD, ...) from a YAML config")
    train.add_argument("--config", help="YAML config (experiments/hissd/<taskset>.yaml)")
    train.add_argument("--out", help="run folder (default runs/<algo>/<taskset>-<quality>-seed<seed>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    train.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. updates=500")
    train.set_defaults(func=_train)
    quick = groups.add_parser("quickstart", help="build data, train HiSSD, evaluate zero-shot, "
                                                 "plot skills: the whole pipeline in minutes")
    quick.add_argument("--out", default="runs/quickstart")
    quick.add_argument("--episodes", type=_positive_int, default=None, help="episodes per training map")
    quick.add_argument("--updates", type=_positive_int, default=None, help="training updates")
    quick.add_argument("--eval-episodes", type=_positive_int, default=32)
    quick.set_defaults(func=_quickstart)

    ev = groups.add_parser("evaluate", help="zero-shot evaluation of a run on a task set")
    ev.add_argument("run", help="run folder of `marl train`")
    ev.add_argument("--checkpoint", default="last", help="last, best or a checkpoint path")
    ev.add_argument("--taskset", default=None, help="default: the run's task set")
    ev.add_argument("--tasks", default=None, help="comma-separated tasks instead of a task set")
    ev.add_argument("--episodes", type=_positive_int, default=32)
    ev.add_argument("--seeds", type=int, nargs="+", default=[0])
    ev.add_argument("--workers", type=_positive_int, default=2, help="processes (1: in this process)")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--out", default=None, help="report folder (default RUN/eval)")
    ev.add_argument("--name", default="zero_shot", help="report file name")
    ev.set_defaults(func=_evaluate)

    diag = groups.add_parser("diagnose", help="skill health: do the skills, value and advantages "
                             "do anything? (writes RUN/eval/health.json)")
    diag.add_argument("run", help="run folder of `marl train` (HiSSD, ODIS; BC/UPDeT: data figures)")
    diag.add_argument("--checkpoint", default="last", help="last, best or a checkpoint path")
    diag.add_argument("--episodes", type=_positive_int, default=64, help="episodes per training task (64)")
    diag.add_argument("--seed", type=int, default=0)
    diag.add_argument("--out", default=None, help="JSON file (default RUN/eval/health.json)")
    diag.add_argument("--data", default=None,
                      help="another dataset root with the run's task set and quality, e.g. "
                           "held-out episodes (`marl datasets build ... --seed 1 --out ROOT`)")
    diag.set_defaults(func=_diagnose)

    cmp_ = groups.add_parser("compare", help="algorithms x tasks table over seeds")
    cmp_.add_argument("runs", nargs="+", help="run folders with an evaluation report")
    cmp_.add_argument("--labels", default=None, help="comma-separated row label per run")
    cmp_.add_argument("--name", default="zero_shot", help="report file name")
    cmp_.add_argument("--baseline", default="bc",
                      help="row to pair every other row against, by training seed (bc)")
    cmp_.add_argument("--out", default=None, help="write OUT.md and OUT.json")
    cmp_.add_argument("--plot", action="store_true",
                      help="also draw the unseen means and paired differences with their 95 %% "
                           "intervals as OUT.png and OUT.svg")
    cmp_.set_defaults(func=_compare)

    viz = groups.add_parser("visualize", help="skill timelines, skill maps, annotated replays")
    viz.add_argument("run", help="run folder of a skill-based algorithm (HiSSD, ODIS)")
    viz.add_argument("--task", required=True, help="e.g. smac:12m (training or unseen)")
    viz.add_argument("--episodes", type=_positive_int, default=4)
    viz.add_argument("--out", default=None, help="default RUN/figures/<task>")
    viz.add_argument("--checkpoint", default="last")
    viz.add_argument("--clusters", type=_positive_int, default=None, help="skill clusters (default: auto)")
    viz.add_argument("--map-tasks", default=None,
                     help="tasks for the skill maps besides --task (default: training tasks)")
    viz.add_argument("--seed", type=int, default=0)
    viz.add_argument("--replay-frames", type=_positive_int, default=200,
                     help="MuJoCo replays: at most this many rendered frames (every n-th step)")
    viz.set_defaults(func=_visualize)
    return parser


def main(argv: list[str] | None = None) -> int:
    from envs import UserError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `marl train` takes key=value overrides on both sides of its options (argparse alone stops
    # collecting a positional list at the first option)
    if extra and hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        args.overrides = list(args.overrides) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        status = args.func(args)
    except UserError as err:  # user mistakes: one line, no traceback
        print(f"marl: error: {err}", file=sys.stderr)
        return 2
    except (NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError) as err:
        # a path the user gave that cannot be written or read as asked (e.g. --out below a file)
        print(f"marl: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
