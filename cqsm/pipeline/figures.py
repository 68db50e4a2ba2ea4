"""The papermill driver: run the chapters, check the figures they write, caption them.

Every figure of the book and of the paper is drawn by one code cell of one chapter, as listed in
``paper_figures/manifest.yml`` (read by :mod:`cqsm.pipeline.manifest`).

``run_figures`` executes chapters with papermill, kernel ``python3``, working directory the
chapter's folder, ``CQSM_FIGURE_DIR`` set to ``paper_figures/figures/<profile>``; it checks that
every figure of the chapter was written afresh as ``<id>.pdf``, ``<id>.png`` and ``<id>.csv``, puts
the manifest caption into each figure cell, hides papermill's injected parameter cell from the
book (tag ``remove-cell``) and writes the executed notebook to
``_build/executed/<profile>/<chapter file>.ipynb``, from which :mod:`cqsm.pipeline.book`
builds the book.
``check`` does the checks that need no run: the manifest against the chapters' figure cells.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cqsm.atomic import atomic_write_text
from cqsm.pipeline.manifest import (
    MANIFEST,
    Chapter,
    Figure,
    Manifest,
    PipelineError,
    display_path,
    executed_notebook,
    figure_dir,
    load_manifest,
    quoted,
)

FIGURE_SUFFIXES = (".pdf", ".png", ".csv")
KERNEL = "python3"
FIGURE_DIR_ENV = "CQSM_FIGURE_DIR"


# ---------------------------------------------------------------------------------------------
# Chapters as notebooks
# ---------------------------------------------------------------------------------------------


def figure_name(cell) -> str | None:
    """The figure id of a code cell (``metadata.mystnb.figure.name``), or None."""
    if cell.get("cell_type") != "code":
        return None
    figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
    name = figure.get("name") if isinstance(figure, dict) else None
    return str(name) if name is not None else None


def read_chapter(manifest: Manifest, chapter: Chapter):
    """The chapter as an in-memory notebook, after checking its cells against the manifest."""
    import jupytext

    path = manifest.root / chapter.file
    if not path.is_file():
        raise PipelineError(
            f"{chapter.file} does not exist (chapter {chapter.name!r} in {MANIFEST})"
        )
    nb = jupytext.read(path)
    problems = []
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1 or tagged[0].cell_type != "code":
        problems.append(
            f'needs exactly one code cell tagged parameters (holding profile = "book"), '
            f"found {len(tagged)}"
        )
    expected = {fig.id for fig in manifest.figures_of(chapter.name)}
    seen: set[str] = set()
    for cell in nb.cells:
        name = figure_name(cell)
        if name is None:
            continue
        if name in seen:
            problems.append(f"two cells draw figure {name!r}")
        seen.add(name)
        if name not in expected:
            owner = manifest.figures.get(name)
            problems.append(
                f"figure cell {name!r} is not in {MANIFEST}: add it there with a caption"
                if owner is None
                else f"figure cell {name!r} belongs to chapter {owner.chapter!r} in {MANIFEST}"
            )
    for name in sorted(expected - seen):
        problems.append(
            f"{MANIFEST} lists figure {name!r} for this chapter, but no code cell has "
            f"`mystnb: figure: name: {name}` in its options"
        )
    if problems:
        raise PipelineError(f"{chapter.file}:\n" + "\n".join(f"  - {p}" for p in problems))
    return nb


def _display_problem(cell) -> str | None:
    """Why the book could not caption this figure cell's output, or None if it can.

    The book wraps every displayed output of a figure cell in a figure with the cell's name, so
    the cell must display exactly one thing, an image (a second output duplicates the label).
    """
    shown = [
        o
        for o in cell.get("outputs", [])
        if o.get("output_type") in ("display_data", "execute_result")
    ]
    if len(shown) == 1 and any(key.startswith("image/") for key in shown[0].get("data", {})):
        return None
    kinds = "; ".join(", ".join(o.get("data", {})) for o in shown) or "nothing"
    return (
        f"must display exactly one image and nothing else (it displayed: {kinds}); "
        "end the cell with `plt.show()` after `save(...)`, and display nothing else (assign "
        "or discard other values)"
    )


def caption(figure: Figure, chapter: Chapter, profile: str) -> str:
    """The manifest caption plus a sentence naming the code that drew the figure."""
    return (
        f"{figure.caption} Drawn by the cell named `{figure.id}` in `{chapter.file.as_posix()}` "
        f"(profile `{profile}`)."
    )


def inject_captions(nb, manifest: Manifest, chapter: Chapter, profile: str) -> None:
    """Set ``metadata.mystnb.figure.caption`` of every figure cell from the manifest."""
    for cell in nb.cells:
        figure = manifest.figures.get(figure_name(cell))
        if figure is not None:
            cell.metadata["mystnb"]["figure"]["caption"] = caption(figure, chapter, profile)


INJECTED_TAG = "injected-parameters"  # papermill's tag on the cell it adds
HIDDEN_TAG = "remove-cell"  # Jupyter Book leaves such a cell out of the page


def hide_injected_parameters(nb) -> None:
    """Tag papermill's injected parameter cell ``remove-cell``: the book does not show it.

    The chapter's own ``parameters`` cell (its default profile) stays on the page; the profile
    it ran at is named in every figure caption (:func:`caption`).
    """
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if INJECTED_TAG in tags and HIDDEN_TAG not in tags:
            cell.setdefault("metadata", {})["tags"] = [*tags, HIDDEN_TAG]


def source_digest(path: Path) -> str:
    """The SHA-256 of a chapter's source, recorded in its executed notebook (``metadata.cqsm``)
    so that :mod:`cqsm.pipeline.book` can tell a chapter changed since it was run."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _kernel_config():
    """Encrypt the connection to the kernel where ZeroMQ can (and ipykernel stops warning)."""
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


def _kernel_environment(root: Path, profile: str) -> dict[str, str]:
    """What a chapter's kernel reads from its environment: the figure folder of ``profile``."""
    return {FIGURE_DIR_ENV: str(figure_dir(root, profile)), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the kernels started inside the block."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ---------------------------------------------------------------------------------------------
# Running chapters
# ---------------------------------------------------------------------------------------------


@dataclass
class FigureRun:
    id: str
    chapter: str
    seconds: float
    files: list[Path]


@dataclass
class ChapterRun:
    chapter: str
    seconds: float
    notebook: Path
    figures: list[FigureRun] = field(default_factory=list)


def run_chapter(
    manifest: Manifest, chapter: Chapter, profile: str, *, log_output: bool = False
) -> ChapterRun:
    """Execute one chapter at ``profile``, check its figure files, write the executed notebook."""
    import papermill

    manifest.check_profile(profile)
    nb = read_chapter(manifest, chapter)
    root = manifest.root.resolve()
    digest = source_digest(root / chapter.file)  # of the source as it is run
    figures = manifest.figures_of(chapter.name)
    out_dir = figure_dir(root, profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = executed_notebook(root, profile, chapter)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.stem + ".partial.ipynb")
    failed = output.with_name(output.stem + ".failed.ipynb")
    for stale in (output, failed):  # executed/ only ever holds notebooks that passed
        stale.unlink(missing_ok=True)

    timeout = chapter.timeout[profile]
    started = time.time()
    try:
        with _environment(**_kernel_environment(root, profile)):
            nb = papermill.execute_notebook(
                nb,
                str(partial),
                parameters=dict(chapter.parameters[profile]),
                kernel_name=KERNEL,
                cwd=str(root / chapter.file.parent),
                execution_timeout=timeout,
                progress_bar=False,
                log_output=log_output,
                stdout_file=sys.stdout if log_output else None,
                stderr_file=sys.stderr if log_output else None,
                config=_kernel_config(),
            )
    except Exception as err:  # a cell raised, timed out, or the kernel died
        if partial.exists():
            os.replace(partial, failed)
        hint = ""
        if "timed out" in str(err).lower() or type(err).__name__ == "CellTimeoutError":
            hint = (
                f"\nEach cell may run {timeout} s at profile {profile!r} "
                f"(timeout of chapter {chapter.name!r} in {MANIFEST})."
            )
        kept = f"\nThe notebook as far as it ran: {display_path(failed)}" if failed.exists() else ""
        raise PipelineError(
            f"chapter {chapter.name!r} ({chapter.file}) failed at profile {profile!r}:\n"
            f"{err}{hint}{kept}"
        ) from err
    seconds = time.time() - started

    problems = []
    runs = []
    cells = {figure_name(cell): cell for cell in nb.cells if figure_name(cell) is not None}
    for fig in figures:
        files = [out_dir / f"{fig.id}{suffix}" for suffix in FIGURE_SUFFIXES]
        for path in files:
            if not path.exists():
                problems.append(
                    f"{display_path(path)}: missing; the cell must call "
                    f'cqsm.pipeline.plots.save(fig, "{fig.id}", data), which writes it to '
                    f"${FIGURE_DIR_ENV}"
                )
            elif path.stat().st_mtime < started:
                problems.append(f"{display_path(path)}: not rewritten by this run")
        problem = _display_problem(cells[fig.id])
        if problem:
            problems.append(f"cell {fig.id!r} {problem}")
        duration = cells[fig.id].get("metadata", {}).get("papermill", {}).get("duration")
        runs.append(FigureRun(fig.id, chapter.name, float(duration or 0.0), files))
    if problems:
        os.replace(partial, failed)
        raise PipelineError(
            f"chapter {chapter.name!r} ({chapter.file}) ran at profile {profile!r}, but:\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\nThe executed notebook: {display_path(failed)}"
        )

    inject_captions(nb, manifest, chapter, profile)
    hide_injected_parameters(nb)
    nb.metadata["papermill"]["input_path"] = chapter.file.as_posix()
    nb.metadata["papermill"]["output_path"] = output.relative_to(root).as_posix()
    nb.metadata["cqsm"] = {
        "chapter": chapter.name,
        "profile": profile,
        "source": chapter.file.as_posix(),
        "source_sha256": digest,
    }
    import nbformat

    atomic_write_text(output, nbformat.writes(nb))
    partial.unlink(missing_ok=True)
    return ChapterRun(chapter.name, seconds, output, runs)


def run_figures(
    root: Path,
    profile: str,
    chapters: list[str] | None = None,
    *,
    keep_going: bool = False,
    log_output: bool = False,
    jobs: int = 1,
    out=None,
) -> list[ChapterRun]:
    """Run the chapters (all, or those named) at ``profile``; print progress and a table.

    ``jobs`` chapters run at a time (each in its own kernel; they share nothing but the figure
    folder, where each writes only its own figures), started in the manifest's order. After a
    failure without ``keep_going`` no further chapter starts; those running finish first.
    """
    out = sys.stdout if out is None else out
    if jobs < 1:
        raise PipelineError(f"jobs must be at least 1; got {jobs}.")
    if jobs > 1 and log_output:
        raise PipelineError("log_output streams one chapter's cells: use it with jobs=1.")
    manifest, selected = check(root, profile, chapters)  # all of them before running any

    done: dict[int, ChapterRun] = {}
    errors: dict[int, PipelineError] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def run(number: int, chapter: Chapter) -> None:
        tag = f"[{number}/{len(selected)}] {chapter.name}"
        if stop.is_set():
            return
        with lock:
            print(f"{tag}: running {chapter.file} at profile {profile} ...", file=out, flush=True)
        try:
            result = run_chapter(manifest, chapter, profile, log_output=log_output)
        except PipelineError as err:
            with lock:
                errors[number] = err
                print(f"{tag}: FAILED", file=out, flush=True)
                if keep_going:
                    print(str(err), file=sys.stderr, flush=True)
                else:
                    stop.set()
            return
        with lock:
            done[number] = result
            print(
                f"{tag}: done in {result.seconds:.1f} s, {len(result.figures)} figures, "
                f"notebook {display_path(result.notebook)}",
                file=out,
                flush=True,
            )

    numbered = list(enumerate(selected, start=1))
    # What run_chapter sets for its kernel, set once around every thread (each then restores it
    # to the same values, whatever the order in which they end).
    env = _kernel_environment(manifest.root.resolve(), profile)
    # papermill runs each chapter inside os.chdir to its folder, which is the process's: with
    # chapters side by side the last to end restores another's folder, so restore the caller's.
    with _environment(**env), contextlib.chdir(os.getcwd()):
        if jobs == 1:
            for number, chapter in numbered:
                run(number, chapter)
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for future in [pool.submit(run, n, c) for n, c in numbered]:
                    future.result()
    runs = [done[n] for n in sorted(done)]
    print_table(runs, figure_dir(manifest.root, profile), out=out)
    if errors and not keep_going:
        raise errors[min(errors)]
    if errors:
        failures = [selected[n - 1].name for n in sorted(errors)]
        raise PipelineError(f"{len(failures)} chapter(s) failed: {quoted(failures)} (see above)")
    return runs


def check(
    root: Path, profile: str, chapters: list[str] | None = None
) -> tuple[Manifest, list[Chapter]]:
    """Check the manifest, the profile and the chapters' cells without running anything."""
    manifest = load_manifest(root)
    manifest.check_profile(profile)
    selected = manifest.select(chapters)
    for chapter in selected:
        read_chapter(manifest, chapter)
    return manifest, selected


def print_table(runs: list[ChapterRun], folder: Path, out=None) -> None:
    out = sys.stdout if out is None else out
    rows = [
        (
            fig.id,
            fig.chapter,
            f"{fig.seconds:.1f}",
            " ".join(p.suffix[1:] for p in fig.files)
            + f" ({sum(p.stat().st_size for p in fig.files) / 1024:.0f} KiB)",
        )
        for run in runs
        for fig in run.figures
    ]
    if not rows:
        return
    header = ("figure", "chapter", "seconds", "files")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print(f"\nFigures in {display_path(folder)}:", file=out)
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )
    out.flush()
