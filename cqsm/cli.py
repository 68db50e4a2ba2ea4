"""The ``cqsm`` command.

Each subcommand is one ``add_<name>(subparsers, argv)`` function that declares its options and
sets ``run`` to the function doing the work, which lives in the module the subcommand is about
(``argv`` lets ``train`` and ``sweep`` offer the settings of the algorithms given). A new
subcommand is one more such function in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import gymnasium as gym

from cqsm import settings as cli_settings
from cqsm.pipeline import book, figures
from cqsm.pipeline.manifest import MANIFEST, PipelineError, find_root
from cqsm.rl.agents import ALGOS, agent_class
from cqsm.rl.envs import EnvError
from cqsm.rl.results import RunError
from cqsm.rl.train import TrainingDiverged, TrainSettings, train
from cqsm.settings import SettingsError

# Errors that speak to the user: printed as one message, exit status 1, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    PipelineError,
    RunError,
    EnvError,
    SettingsError,
    TrainingDiverged,
)


def _root(args: argparse.Namespace) -> Path:
    if args.root is None:
        return find_root()
    return find_root(args.root, search_up=False)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        default="book",
        help="size of every computation: ci (tiny, every code path, minutes), book (the default: "
        "exact LQ results live, MuJoCo from committed results) or paper (re-runs every "
        "experiment; hours); the profiles are defined in paper_figures/manifest.yml",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="the repository root (default: the first folder at or above the current one that "
        "holds paper_figures/manifest.yml)",
    )


def add_figures(subparsers, argv: list[str]) -> None:
    parser = subparsers.add_parser(
        "figures",
        help="run the chapters with papermill and regenerate their figures",
        description="Run each chapter of paper_figures/manifest.yml with papermill at a profile, "
        "check that it wrote every figure it owns (<id>.pdf, .png, .csv in "
        "paper_figures/figures/<profile>/), and write the executed notebooks, captions "
        "included, to _build/executed/<profile>/ for `cqsm book`.",
    )
    _add_common(parser)
    parser.add_argument(
        "--chapter",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="run only these chapters, e.g. ch04_policy_evaluation (repeatable; default: all)",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="after a chapter fails, run the others and report every failure at the end",
    )
    parser.add_argument(
        "--log-output",
        action="store_true",
        help="stream the output of each cell to the terminal while it runs",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run N chapters at a time, each in its own kernel (default 1; make test uses 2)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only check the manifest against the chapters' figure cells; run nothing",
    )
    parser.set_defaults(run=run_figures)


def run_figures(args: argparse.Namespace) -> int:
    root = _root(args)
    if args.check:
        _, checked = figures.check(root, args.profile, args.chapter)
        print(f"{len(checked)} chapters: their figure cells agree with {MANIFEST}")
        return 0
    figures.run_figures(
        root,
        args.profile,
        args.chapter,
        keep_going=args.keep_going,
        log_output=args.log_output,
        jobs=args.jobs,
    )
    return 0


def add_book(subparsers, argv: list[str]) -> None:
    parser = subparsers.add_parser(
        "book",
        help="build the HTML book from the notebooks `cqsm figures` executed",
        description="Stage a Jupyter Book source tree under _build/stage/<profile>/ from "
        "_toc.yml, _config.yml (notebook execution off), the book's pages and the notebooks "
        "executed by `cqsm figures --profile <profile>`, and build it into "
        "_build/html/<profile>/. Nothing is executed.",
    )
    _add_common(parser)
    parser.add_argument(
        "--strict",
        action="store_true",
        help="treat every warning as an error (jupyter-book build -W -n --keep-going) and "
        "refuse chapters changed since they were executed",
    )
    parser.set_defaults(run=run_book)


def run_book(args: argparse.Namespace) -> int:
    book.build_book(_root(args), args.profile, strict=args.strict)
    return 0


def _given(argv: list[str], flag: str, **kwargs):
    """What ``flag`` (``--algo`` or ``--algos``: the algorithms whose settings become
    options) is on the command line, before the whole parser exists; default cqsm."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument(flag, **kwargs)
    return getattr(pre.parse_known_args(argv)[0], flag.lstrip("-"))


def add_train(subparsers, argv: list[str]) -> None:
    algo = _given(argv, "--algo", default="cqsm")
    parser = subparsers.add_parser(
        "train",
        help="train an agent on a Gymnasium environment (resumable)",
        description="Train one run and write <out>/<algo>-<env>-s<seed>/ with settings.json, "
        "results.csv (tidy rows), provenance.json, checkpoint.pt and policy.pt. Settings start "
        "from the defaults, then the algorithm's published loop defaults, then the task's row "
        "of cqsm.rl.presets.TASKS and, for cqsm, its one default in physical units (set from the "
        "env's own interval, action box and time limit: cqsm.rl.presets.default), then the "
        "options given here; settings.json and the printout "
        "say where each value came from. --control-interval sets the seconds per control step "
        "for every algorithm (a MuJoCo env by its frame skip, any other by repeating the "
        "action); returns are reported in the env's native units at every interval. The "
        f"algorithm's settings below are those of --algo {algo} (choose another with "
        f"--algo and ask --help again); algorithms: {', '.join(sorted(ALGOS))}.",
    )
    _add_train_settings(parser, [algo])
    parser.set_defaults(run=run_train)


def _add_train_settings(parser: argparse.ArgumentParser, algos: list[str], skip=()) -> None:
    """The options of ``cqsm train``: every loop setting of :class:`TrainSettings` but those in
    ``skip``, then the settings of each known algorithm in ``algos`` (dest ``agent.<field>``;
    a setting two of them share is declared once, under the first)."""
    train_group = parser.add_argument_group(
        "training loop (budgets in control steps, or in simulated seconds with the *-seconds "
        "options; not both)"
    )
    cli_settings.add_arguments(train_group, TrainSettings, skip=("agent", "sources", *skip))
    declared: list[str] = []
    for algo in dict.fromkeys(a for a in algos if a in ALGOS):
        cls = agent_class(algo).Settings
        defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
        shared = [name for name in defaults if name in declared]
        note = None
        if shared:
            note = "also takes, declared above: " + ", ".join(
                f"--{name.replace('_', '-')} ({algo}'s default: {defaults[name]!r})"
                for name in shared
            )
        group = parser.add_argument_group(f"{algo} settings", note)
        cli_settings.add_arguments(group, cls, dest_prefix="agent.", skip=declared)
        declared += [name for name in defaults if name not in declared]


def run_train(args: argparse.Namespace) -> int:
    given = cli_settings.given(args, TrainSettings)
    env, algo = given.pop("env", TrainSettings.env), given.get("algo", TrainSettings.algo)
    agent = cli_settings.given(args, agent_class(algo).Settings, dest_prefix="agent.")
    settings = TrainSettings.for_task(env, agent=agent, **given)
    print(f"cqsm train: {settings.run_dir}")
    print(settings.describe())
    result = train(settings)
    last = result.rows.iloc[-1]
    print(
        f"step {int(last['step'])}: eval return {last['eval_return']:.1f} "
        f"± {last['eval_return_std']:.1f}; results in {result.run_dir}"
    )
    return 0


def add_evaluate(subparsers, argv: list[str]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained policy from its run folder; optionally record a GIF",
        description="Load <run>/settings.json and the policy (policy.pt, else checkpoint.pt), "
        "run episodes without exploration noise and print their returns. With --render, "
        "record the first episode as an animated GIF (MuJoCo envs render off-screen: set "
        "MUJOCO_GL=egl, which this command does when it is unset).",
    )
    parser.add_argument("run_dir", type=Path, help="the run folder written by `cqsm train`")
    parser.add_argument("--episodes", type=int, default=10, help="episodes (default: 10)")
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the evaluation starts "
        "(default: the run's seed, i.e. the training evaluations' episodes)",
    )
    parser.add_argument("--render", action="store_true", help="record the first episode")
    parser.add_argument(
        "--video",
        type=Path,
        default=None,
        help="where to write the GIF (default: <run>/policy.gif)",
    )
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    import os

    if args.render:
        os.environ.setdefault("MUJOCO_GL", "egl")
    from cqsm.rl.envs import interval_of
    from cqsm.rl.evaluation import evaluate, record
    from cqsm.rl.runs import load_run

    settings, env, agent = load_run(args.run_dir, render_mode="rgb_array" if args.render else None)
    frames = [] if args.render else None
    seed = settings.seed if args.seed is None else args.seed
    try:
        returns = evaluate(agent, env, args.episodes, seed, frames=frames)
    except gym.error.DependencyNotInstalled as err:  # rendering needs what the env names
        raise EnvError(
            f"Cannot render {settings.env}: {err}. Or evaluate without --render."
        ) from None
    print(
        f"{settings.algo} on {settings.env}: return {returns.mean():.1f} ± {returns.std():.1f} "
        f"over {args.episodes} episodes"
    )
    if frames is not None:
        path = record(
            [f for f, _ in frames],
            args.video or args.run_dir / "policy.gif",
            fps=1 / interval_of(env).dt,  # one frame per control step
        )
        print(f"recorded {len(frames)} frames to {path}")
    return 0


def add_bench(subparsers, argv: list[str]) -> None:
    from cqsm.rl.bench import BenchSettings

    parser = subparsers.add_parser(
        "bench",
        help="measure training steps per second and action latency of every algorithm",
        description="Measure, interleaved on this machine with one torch thread, the training "
        "steps per second (act, env step, store, update) and the action latency of each "
        "algorithm on each env, several times; write <out>/results.csv, summary.csv and "
        "provenance.json, and print the summary. An interrupted bench resumes when run again.",
    )
    cli_settings.add_arguments(parser, BenchSettings)
    parser.set_defaults(run=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from cqsm.rl.bench import BenchSettings, bench, markdown

    settings = BenchSettings(**cli_settings.given(args, BenchSettings))
    print(markdown(bench(settings)))
    print(f"results in {settings.out}")
    return 0


def add_sweep(subparsers, argv: list[str]) -> None:
    from cqsm.rl.sweep import ADDRESS_ENV, BACKEND_ENV, BACKENDS

    algos = _given(argv, "--algos", nargs="+", default=["cqsm"])
    parser = subparsers.add_parser(
        "sweep",
        help="train every algorithm x env x seed, on worker processes or a Ray cluster (resumable)",
        description="Train one run for each combination of --algos, --envs and --seeds, each "
        "made as `cqsm train` makes one (the defaults, the algorithm's published loop "
        "defaults, the task's presets and CQSM's physical default, then the options given "
        "here, which apply to every run) "
        "into its own folder <out>/<algo>-<env>-s<seed>/. A run already at its total steps is "
        "skipped and an interrupted one resumed from its checkpoint, so the same command "
        "continues a sweep. A line is printed as each run ends, and a table of every run "
        "(run, status, final step, final eval return) at the end; if a run fails, the others "
        "still run and the exit status is 1. Backends: local (--workers processes on this "
        "machine, a fresh one per run with --torch-threads torch threads) or ray (each run "
        "one Ray task with one CPU on the cluster at --address, retried from its checkpoint "
        "if its worker or node dies; --out must then be an absolute folder on a filesystem "
        "every node reaches, where the nodes write results and checkpoints). An algorithm's "
        "settings below are those of the --algos given (ask --help again with others); one "
        "that several of them have applies to each, one that only some have applies to "
        f"those. Algorithms: {', '.join(sorted(ALGOS))}.",
    )
    grid = parser.add_argument_group("the runs (algos x envs x seeds) and where they run")
    grid.add_argument(
        "--algos",
        nargs="+",
        default=["cqsm"],
        metavar="ALGO",
        help=f"algorithms, each one of {', '.join(sorted(ALGOS))} (default: cqsm)",
    )
    grid.add_argument(
        "--envs",
        nargs="+",
        default=["Pendulum-v1"],
        metavar="ENV",
        help="Gymnasium environment ids with a Box action space (default: Pendulum-v1)",
    )
    grid.add_argument(
        "--seeds", nargs="+", type=int, default=[0], metavar="N", help="seeds (default: 0)"
    )
    grid.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help=f"where the runs train: local worker processes or a Ray cluster (default: the "
        f"environment variable {BACKEND_ENV}, else local)",
    )
    grid.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="local backend: runs side by side, one process each (default: 2; as many as "
        "there are cores)",
    )
    grid.add_argument(
        "--address",
        default=None,
        help="ray backend: the cluster, anything ray.init accepts: host:port of the head node "
        "(`ray start --head` prints it), auto (the cluster this machine joined), "
        f"ray://host:10001 (default: the environment variable {ADDRESS_ENV}, else "
        "RAY_ADDRESS, else the cluster last started here with `ray start`, else a new Ray "
        "instance on this machine); an address where no head node answers is an error, never "
        "a hang",
    )
    grid.add_argument(
        "--max-retries",
        type=int,
        default=3,
        metavar="N",
        help="ray backend: times a run's task is retried when its worker process or node "
        "dies; each retry resumes from the run's last checkpoint (default: 3)",
    )
    _add_train_settings(parser, algos, skip=("algo", "env", "seed", "resume", "progress"))
    out = parser._option_string_actions["--out"]
    out.help += (
        "; with --backend ray an absolute path on a filesystem shared by every node of the "
        "cluster (results and checkpoints are written there by whichever node trains a run)"
    )
    parser.set_defaults(run=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    from cqsm.rl.sweep import sweep_runs

    for algo in args.algos:
        agent_class(algo)  # an unknown algorithm is refused before anything runs
    loop = cli_settings.given(args, TrainSettings)
    runs = [
        TrainSettings.for_task(
            env,
            algo=algo,
            seed=seed,
            agent=cli_settings.given(args, agent_class(algo).Settings, dest_prefix="agent."),
            **loop,
        )
        for algo in args.algos
        for env in args.envs
        for seed in args.seeds
    ]
    grid = " x ".join(", ".join(map(str, values)) for values in (args.algos, args.envs, args.seeds))
    plural = "s" if len(runs) != 1 else ""
    print(f"cqsm sweep: {len(runs)} run{plural} ({grid}) into {runs[0].out}", flush=True)
    sweep_runs(
        runs,
        workers=args.workers,
        backend=args.backend,
        address=args.address,
        max_retries=args.max_retries,
    )
    return 0


SUBCOMMANDS = (add_figures, add_book, add_train, add_sweep, add_evaluate, add_bench)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cqsm",
        description="Continuous Q-Score Matching: train agents, regenerate the figures, build "
        "the book.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    for add in SUBCOMMANDS:
        add(subparsers, argv)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as err:
        print(f"cqsm {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cqsm {args.command}: interrupted", file=sys.stderr)
        return 130
