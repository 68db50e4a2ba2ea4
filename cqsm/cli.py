"""The ``cqsm`` command.

Each subcommand is one ``add_<name>`` function that declares its options and sets ``run`` to the
function doing the work, which lives in the module the subcommand is about. A new subcommand
(train, evaluate, bench) is one more such function in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cqsm import book, figures
from cqsm.manifest import MANIFEST, PipelineError, find_root

# Errors that speak to the user: printed as one message, exit status 1, no traceback.
USER_ERRORS: tuple[type[Exception], ...] = (PipelineError,)


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


def add_figures(subparsers) -> None:
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


def add_book(subparsers) -> None:
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


SUBCOMMANDS = (add_figures, add_book)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cqsm",
        description="Continuous Q-Score Matching: regenerate the figures and build the book.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except USER_ERRORS as err:
        print(f"cqsm {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cqsm {args.command}: interrupted", file=sys.stderr)
        return 130
