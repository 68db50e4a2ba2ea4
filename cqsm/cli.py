"""The ``cqsm`` command.

Each subcommand is one ``add_<name>(subparsers, argv)`` function that declares its options and
sets ``run`` to the function doing the work, which lives in the module the subcommand is about
(``argv`` lets ``train`` offer the settings of the ``--algo`` given). A new subcommand is one
more such function in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
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


def _algo(argv: list[str]) -> str:
    """The ``--algo`` given on the command line (its settings become options), default cqsm."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--algo", default="cqsm")
    return pre.parse_known_args(argv)[0].algo


def add_train(subparsers, argv: list[str]) -> None:
    algo = _algo(argv)
    parser = subparsers.add_parser(
        "train",
        help="train an agent on a Gymnasium environment (resumable)",
        description="Train one run and write <out>/<algo>-<env>-s<seed>/ with settings.json, "
        "results.csv (tidy rows), provenance.json, checkpoint.pt and policy.pt. Settings start "
        "from the defaults, then the algorithm's published loop defaults, then the task's row "
        "of cqsm.rl.presets.TASKS, then the options given here; settings.json and the printout "
        "say where each value came from. --control-interval sets the seconds per control step "
        "for every algorithm (a MuJoCo env by its frame skip, any other by repeating the "
        "action); returns are reported in the env's native units at every interval. The "
        f"algorithm's settings below are those of --algo {algo} (choose another with "
        f"--algo and ask --help again); algorithms: {', '.join(sorted(ALGOS))}.",
    )
    train_group = parser.add_argument_group(
        "training loop (budgets in control steps, or in simulated seconds with the *-seconds "
        "options; not both)"
    )
    cli_settings.add_arguments(train_group, TrainSettings, skip=("agent", "sources"))
    if algo in ALGOS:
        group = parser.add_argument_group(f"{algo} settings")
        cli_settings.add_arguments(group, agent_class(algo).Settings, dest_prefix="agent.")
    parser.set_defaults(run=run_train)


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


SUBCOMMANDS = (add_figures, add_book, add_train, add_evaluate, add_bench)


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
