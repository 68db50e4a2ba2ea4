"""The figure pipeline: run the chapters with papermill, check their figures, build the book.

Every figure of the book and of the paper is drawn by one code cell of one chapter. The manifest
``paper_figures/manifest.yml`` lists the chapters (their file, and their parameters and time limit
for each profile) and every figure (its id, the chapter that draws it, its caption).

``run_figures`` executes chapters with papermill, kernel ``python3``, working directory the
chapter's folder, ``CQSM_FIGURE_DIR`` set to ``paper_figures/figures/<profile>``; it checks that
every figure of the chapter was written afresh as ``<id>.pdf``, ``<id>.png`` and ``<id>.csv``, puts
the manifest caption into each figure cell and writes the executed notebook to
``_build/executed/<profile>/<chapter file>.ipynb``.

``build_book`` stages a Jupyter Book source tree from those executed notebooks under
``_build/stage/<profile>`` and builds it, without executing anything, into
``_build/html/<profile>``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path("paper_figures/manifest.yml")
FIGURE_SUFFIXES = (".pdf", ".png", ".csv")
KERNEL = "python3"
FIGURE_DIR_ENV = "CQSM_FIGURE_DIR"
TOC = "_toc.yml"
CONFIG = "_config.yml"

_CHAPTER_KEYS = {"name", "file", "parameters", "timeout"}
_FIGURE_KEYS = {"id", "chapter", "caption"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_FIGURE_ID = re.compile(r"^fig-[a-z0-9][a-z0-9-]*$")


class PipelineError(RuntimeError):
    """A problem the user has to fix; the message says what is wrong and what to do."""


# ---------------------------------------------------------------------------------------------
# The manifest
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chapter:
    name: str
    file: Path  # relative to the repository root, e.g. book/ch02_action_diffusion.md
    parameters: Mapping[str, Mapping[str, Any]]  # profile -> papermill parameters
    timeout: Mapping[str, int]  # profile -> seconds any one cell may run


@dataclass(frozen=True)
class Figure:
    id: str
    chapter: str
    caption: str


@dataclass(frozen=True)
class Manifest:
    root: Path
    profiles: Mapping[str, str]  # name -> what the profile is for
    chapters: Mapping[str, Chapter]  # in book order
    figures: Mapping[str, Figure]

    def figures_of(self, chapter: str) -> list[Figure]:
        return [fig for fig in self.figures.values() if fig.chapter == chapter]

    def check_profile(self, profile: str) -> None:
        if profile not in self.profiles:
            raise PipelineError(
                f"unknown profile {profile!r}; {MANIFEST} defines {_names(self.profiles)}"
            )

    def select(self, names: list[str] | None) -> list[Chapter]:
        """The chapters called ``names`` (all of them, in book order, for None or [])."""
        if not names:
            return list(self.chapters.values())
        unknown = [name for name in names if name not in self.chapters]
        if unknown:
            raise PipelineError(
                f"unknown chapter {_names(unknown)}; {MANIFEST} lists {_names(self.chapters)}"
            )
        return [self.chapters[name] for name in dict.fromkeys(names)]


def _names(items) -> str:
    return ", ".join(repr(str(item)) for item in items) or "none"


def find_root(start: Path | None = None, *, search_up: bool = True) -> Path:
    """The repository root: ``start`` (default: the current folder) or, with ``search_up``, the
    first folder above it that holds the manifest."""
    start = (Path.cwd() if start is None else Path(start)).resolve()
    for folder in (start, *start.parents) if search_up else (start,):
        if (folder / MANIFEST).is_file():
            return folder
    above = " or any folder above it" if search_up else ""
    raise PipelineError(
        f"no {MANIFEST} in {start}{above}: run cqsm inside the cqsm repository, or pass "
        "--root with the repository's folder"
    )


def load_manifest(root: Path) -> Manifest:
    """Read and check ``<root>/paper_figures/manifest.yml``."""
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise PipelineError(f"the figure manifest {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise PipelineError(f"{path} is not valid YAML: {err}") from err
    return parse_manifest(data, root=Path(root), source=str(MANIFEST))


def parse_manifest(data: Any, root: Path, source: str = str(MANIFEST)) -> Manifest:
    """Check the manifest's content and return it; every problem found is listed in the error."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise PipelineError(f"{source}: expected a mapping with profiles, chapters and figures")
    for key in sorted(set(data) - {"profiles", "chapters", "figures"}):
        problems.append(f"unknown top-level key {key!r} (expected profiles, chapters, figures)")

    profiles = data.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        problems.append("'profiles' must map each profile name to a one-line description")
        profiles = {}
    profiles = {str(name): str(text) for name, text in profiles.items()}

    chapters: dict[str, Chapter] = {}
    files: dict[Path, str] = {}
    raw_chapters = data.get("chapters")
    if not isinstance(raw_chapters, list) or not raw_chapters:
        problems.append("'chapters' must be a non-empty list")
        raw_chapters = []
    for index, entry in enumerate(raw_chapters):
        chapter = _parse_chapter(entry, f"chapters[{index}]", profiles, problems)
        if chapter is None:
            continue
        if chapter.name in chapters:
            problems.append(f"chapters[{index}]: duplicate chapter name {chapter.name!r}")
            continue
        if chapter.file in files:
            problems.append(
                f"chapters[{index}]: file {str(chapter.file)!r} is also the file of chapter "
                f"{files[chapter.file]!r}"
            )
            continue
        chapters[chapter.name] = chapter
        files[chapter.file] = chapter.name

    figures: dict[str, Figure] = {}
    raw_figures = data.get("figures")
    if not isinstance(raw_figures, list):
        problems.append("'figures' must be a list")
        raw_figures = []
    for index, entry in enumerate(raw_figures):
        where = f"figures[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping with id, chapter and caption")
            continue
        fig_id = entry.get("id")
        if isinstance(fig_id, str):
            where = f"figure {fig_id!r}"
        missing = sorted(_FIGURE_KEYS - set(entry))
        extra = sorted(set(entry) - _FIGURE_KEYS)
        if missing:
            problems.append(f"{where}: missing field {_names(missing)}")
        if extra:
            problems.append(
                f"{where}: unknown field {_names(extra)} (allowed: id, chapter, caption)"
            )
        if missing:
            continue
        ok = True
        if not isinstance(fig_id, str) or not _FIGURE_ID.match(fig_id):
            problems.append(
                f"{where}: id {fig_id!r} must look like 'fig-kl-rate' (lower case, digits, dashes)"
            )
            ok = False
        elif fig_id in figures:
            problems.append(f"{where}: duplicate figure id {fig_id!r}")
            ok = False
        if entry["chapter"] not in chapters:
            problems.append(
                f"{where}: unknown chapter {entry['chapter']!r} (chapters: {_names(chapters)})"
            )
            ok = False
        caption = entry["caption"]
        if not isinstance(caption, str) or not caption.strip():
            problems.append(f"{where}: caption must be a non-empty string")
            ok = False
        if ok:
            figures[fig_id] = Figure(fig_id, entry["chapter"], " ".join(caption.split()))

    if problems:
        raise PipelineError(f"{source} is not valid:\n" + "\n".join(f"  - {p}" for p in problems))
    return Manifest(Path(root), profiles, chapters, figures)


def _parse_chapter(
    entry: Any, where: str, profiles: Mapping[str, str], problems: list[str]
) -> Chapter | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping with name, file, parameters and timeout")
        return None
    if isinstance(entry.get("name"), str):
        where = f"chapter {entry['name']!r}"
    missing = sorted(_CHAPTER_KEYS - set(entry))
    extra = sorted(set(entry) - _CHAPTER_KEYS)
    if missing:
        problems.append(f"{where}: missing field {_names(missing)}")
    if extra:
        problems.append(
            f"{where}: unknown field {_names(extra)} (allowed: name, file, parameters, timeout)"
        )
    if missing:
        return None
    before = len(problems)
    name, file = entry["name"], entry["file"]
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"{where}: name {name!r} must be letters, digits, '_' or '-'")
    path = Path(file) if isinstance(file, str) else None
    if path is None or path.suffix != ".md" or path.is_absolute() or ".." in path.parts:
        problems.append(f"{where}: file {file!r} must be a relative path to a .md chapter")
    elif path.stem != name:
        problems.append(f"{where}: file {file!r} must be named after the chapter ({name}.md)")

    parameters = entry["parameters"]
    timeout = entry["timeout"]
    for key, value in (("parameters", parameters), ("timeout", timeout)):
        if not isinstance(value, dict):
            problems.append(f"{where}: {key} must map each profile to a value")
            continue
        for profile in profiles:
            if profile not in value:
                problems.append(f"{where}: no {key} for profile {profile!r}")
        for profile in value:
            if profile not in profiles:
                problems.append(
                    f"{where}: {key} for unknown profile {profile!r} (profiles: {_names(profiles)})"
                )
    if isinstance(parameters, dict):
        for profile, params in parameters.items():
            if not isinstance(params, dict):
                problems.append(f"{where}: parameters for {profile!r} must be a mapping")
            elif params.get("profile") != profile:
                problems.append(
                    f"{where}: parameters for profile {profile!r} must set profile: {profile}"
                )
    if isinstance(timeout, dict):
        for profile, seconds in timeout.items():
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds <= 0:
                problems.append(
                    f"{where}: timeout for {profile!r} must be a positive whole number of seconds"
                )
    if len(problems) > before:
        return None
    return Chapter(name, path, parameters, timeout)


# ---------------------------------------------------------------------------------------------
# Paths
# ---------------------------------------------------------------------------------------------


def figure_dir(root: Path, profile: str) -> Path:
    return Path(root).resolve() / "paper_figures" / "figures" / profile


def executed_notebook(root: Path, profile: str, chapter: Chapter) -> Path:
    return Path(root) / "_build" / "executed" / profile / chapter.file.with_suffix(".ipynb")


def stage_dir(root: Path, profile: str) -> Path:
    return Path(root) / "_build" / "stage" / profile


def html_dir(root: Path, profile: str) -> Path:
    return Path(root) / "_build" / "html" / profile


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
        "leave the figure open and end the cell with `fig`, and end other expressions with `;`"
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


def source_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _kernel_config():
    """Encrypt the connection to the kernel where ZeroMQ can (and ipykernel stops warning)."""
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


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
        with _environment(**{FIGURE_DIR_ENV: str(out_dir), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}):
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
        kept = f"\nThe notebook as far as it ran: {_rel(failed)}" if failed.exists() else ""
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
                    f"{_rel(path)}: missing; the cell must call "
                    f'cqsm.plots.save(fig, "{fig.id}", data), which writes it to ${FIGURE_DIR_ENV}'
                )
            elif path.stat().st_mtime < started:
                problems.append(f"{_rel(path)}: not rewritten by this run")
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
            + f"\nThe executed notebook: {_rel(failed)}"
        )

    inject_captions(nb, manifest, chapter, profile)
    nb.metadata["papermill"]["input_path"] = chapter.file.as_posix()
    nb.metadata["papermill"]["output_path"] = output.relative_to(root).as_posix()
    nb.metadata["cqsm"] = {
        "chapter": chapter.name,
        "profile": profile,
        "source": chapter.file.as_posix(),
        "source_sha256": digest,
    }
    import nbformat

    _atomic_write_text(output, nbformat.writes(nb))
    partial.unlink(missing_ok=True)
    return ChapterRun(chapter.name, seconds, output, runs)


def run_figures(
    root: Path,
    profile: str,
    chapters: list[str] | None = None,
    *,
    keep_going: bool = False,
    log_output: bool = False,
    out=None,
) -> list[ChapterRun]:
    """Run the chapters (all, or those named) at ``profile``; print progress and a table."""
    out = sys.stdout if out is None else out
    manifest, selected = check(root, profile, chapters)  # all of them before running any

    runs: list[ChapterRun] = []
    failures: list[str] = []
    for number, chapter in enumerate(selected, start=1):
        tag = f"[{number}/{len(selected)}] {chapter.name}"
        print(f"{tag}: running {chapter.file} at profile {profile} ...", file=out, flush=True)
        try:
            run = run_chapter(manifest, chapter, profile, log_output=log_output)
        except PipelineError as err:
            print(f"{tag}: FAILED", file=out, flush=True)
            if not keep_going:
                raise
            print(str(err), file=sys.stderr, flush=True)
            failures.append(chapter.name)
            continue
        runs.append(run)
        print(
            f"{tag}: done in {run.seconds:.1f} s, {len(run.figures)} figures, "
            f"notebook {_rel(run.notebook)}",
            file=out,
            flush=True,
        )
    print_table(runs, figure_dir(manifest.root, profile), out=out)
    if failures:
        raise PipelineError(f"{len(failures)} chapter(s) failed: {_names(failures)} (see above)")
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
    print(f"\nFigures in {_rel(folder)}:", file=out)
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )
    out.flush()


def _rel(path: Path) -> str:
    path = Path(path).resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


# ---------------------------------------------------------------------------------------------
# Building the book from the executed notebooks
# ---------------------------------------------------------------------------------------------


def toc_files(toc: Any) -> list[str]:
    """Every document of a jb-book ``_toc.yml`` (root first), as paths without extension."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if isinstance(node.get(key), str):
                    found.append(str(Path(node[key]).with_suffix("")))
            for value in node.values():
                if isinstance(value, (list, dict)):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return list(dict.fromkeys(found))


def _is_notebook(path: Path) -> bool:
    """Whether a MyST file is a notebook (jupytext front matter with a kernelspec)."""
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return False
    front = text.split("---", 2)[1]
    with contextlib.suppress(yaml.YAMLError):
        meta = yaml.safe_load(front) or {}
        return isinstance(meta, dict) and "kernelspec" in meta
    return False


_STAGE_IGNORE = shutil.ignore_patterns(
    "*.ipynb", ".ipynb_checkpoints", "__pycache__", "_build", ".DS_Store"
)


def stage_book(root: Path, profile: str, *, strict: bool = False) -> Path:
    """Lay out a Jupyter Book source tree for ``profile`` that needs no execution."""
    root = Path(root).resolve()
    manifest = load_manifest(root)
    manifest.check_profile(profile)
    for name in (TOC, CONFIG):
        if not (root / name).is_file():
            raise PipelineError(f"{root / name} does not exist")
    toc = yaml.safe_load((root / TOC).read_text(encoding="utf-8"))
    docs = toc_files(toc)
    by_doc = {str(ch.file.with_suffix("")): ch for ch in manifest.chapters.values()}
    missing_from_toc = [ch.name for doc, ch in by_doc.items() if doc not in docs]
    if missing_from_toc:
        raise PipelineError(f"chapter {_names(missing_from_toc)} of {MANIFEST} is not in {TOC}")

    stage = stage_dir(root, profile)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    shutil.copy2(root / TOC, stage / TOC)
    config = yaml.safe_load((root / CONFIG).read_text(encoding="utf-8")) or {}
    config = copy.deepcopy(config)
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    _atomic_write_text(stage / CONFIG, yaml.safe_dump(config, sort_keys=False))

    # The folders that hold the book's pages, less the chapter sources (their executed notebooks
    # go in instead): the intro, the bibliography, images and the like.
    chapter_sources = {(root / ch.file).resolve() for ch in manifest.chapters.values()}
    folders = sorted({Path(doc).parent for doc in docs} - {Path(".")})
    for folder in folders:
        if (root / folder).is_dir():

            def ignore(directory, names, _folder=folder):
                skip = set(_STAGE_IGNORE(directory, names))
                return skip | {n for n in names if (Path(directory) / n) in chapter_sources}

            shutil.copytree(root / folder, stage / folder, ignore=ignore, dirs_exist_ok=True)
    for extra in _config_files(config):
        if (root / extra).is_file() and not (stage / extra).exists():
            (stage / extra).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / extra, stage / extra)

    stale = []
    for doc in docs:
        chapter = by_doc.get(doc)
        if chapter is not None:
            executed = executed_notebook(root, profile, chapter)
            if not executed.is_file():
                raise PipelineError(
                    f"no executed notebook for chapter {chapter.name!r} at profile {profile!r} "
                    f"({_rel(executed)}): run `cqsm figures --profile {profile}` first"
                )
            target = stage / chapter.file.with_suffix(".ipynb")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(executed, target)
            if _executed_digest(executed) != source_digest(root / chapter.file):
                stale.append(chapter)
            continue
        sources = [
            p for p in (root / f"{doc}{ext}" for ext in (".md", ".ipynb", ".rst")) if p.is_file()
        ]
        if not sources:
            raise PipelineError(f"{TOC} lists {doc!r}, but there is no {doc}.md in {root}")
        if sources[0].suffix != ".md" or _is_notebook(sources[0]):
            raise PipelineError(
                f"{_rel(sources[0])} is a notebook in {TOC} but not a chapter of {MANIFEST}: "
                "add it to the manifest so that `cqsm figures` executes it"
            )
        target = stage / sources[0].relative_to(root)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(sources[0], target)
    if stale:
        message = (
            f"chapter {_names(ch.name for ch in stale)} changed since it was executed at profile "
            f"{profile!r}: run `cqsm figures --profile {profile} "
            + " ".join(f"--chapter {ch.name}" for ch in stale)
            + "`"
        )
        if strict:
            raise PipelineError(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)
    return stage


def _executed_digest(path: Path) -> str | None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return nb.metadata.get("cqsm", {}).get("source_sha256")


def _config_files(config: Mapping[str, Any]) -> list[str]:
    """Files named in the Jupyter Book config that the build reads (bibliography, logo, ...)."""
    files = list(config.get("bibtex_bibfiles") or [])
    for key in ("logo",):
        if config.get(key):
            files.append(config[key])
    if (config.get("html") or {}).get("favicon"):
        files.append(config["html"]["favicon"])
    return [str(f) for f in files]


def jupyter_book_command() -> list[str]:
    """How to call the jupyter-book that belongs to this Python."""
    script = Path(sys.executable).with_name("jupyter-book")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]


def build_book(root: Path, profile: str, *, strict: bool = False, out=None) -> Path:
    """Stage and build the HTML book at ``profile``; return the path of its index.html."""
    out = sys.stdout if out is None else out
    root = Path(root).resolve()
    stage = stage_book(root, profile, strict=strict)
    toc = yaml.safe_load((stage / TOC).read_text(encoding="utf-8"))
    docs = toc_files(toc)

    command = [*jupyter_book_command(), "build", str(stage), "--builder", "html", "--quiet"]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    print(f"Building the book at profile {profile}: {' '.join(command)}", file=out, flush=True)
    # Warnings stream through stderr; the progress report (which names the staging folder)
    # is shown only if the build fails.
    result = subprocess.run(command, cwd=root, check=False, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        print(result.stdout, file=out, flush=True)
        hint = " (--strict turns warnings into errors)" if strict else ""
        raise PipelineError(
            f"jupyter-book build failed with exit code {result.returncode}{hint}; "
            f"the messages above say why. Files under {_rel(stage)} are copies of the "
            "repository's, the chapters as executed notebooks (<chapter>.ipynb:<cell><line>)"
        )

    built = stage / "_build" / "html"
    target = html_dir(root, profile)
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(built, target)

    missing = [p for p in ["index", *docs] if not (target / f"{p}.html").is_file()]
    if missing:
        raise PipelineError(
            f"the build finished but these pages are missing from {_rel(target)}: "
            + ", ".join(f"{p}.html" for p in missing)
        )
    index = target / "index.html"
    print(f"The book at profile {profile}: {index}", file=out, flush=True)
    return index


# ---------------------------------------------------------------------------------------------
# Building straight from the .md chapters (`jupyter-book build .`)
# ---------------------------------------------------------------------------------------------


def setup(app):
    """Sphinx extension, loaded by _config.yml: when the book is built straight from the
    chapters' .md files, their figure cells get the manifest's captions, as the notebooks
    executed by `cqsm figures` do. Chapters run with their default parameters (profile book)."""
    app.connect("source-read", _caption_chapter_source)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def _caption_chapter_source(app, docname: str, source: list[str]) -> None:
    root = Path(app.srcdir)
    path = Path(app.env.doc2path(docname))
    if path.suffix != ".md" or not (root / MANIFEST).is_file():
        return  # e.g. the staged book: executed notebooks that already carry their captions
    manifest = load_manifest(root)
    relative = path.resolve().relative_to(root.resolve())
    for chapter in manifest.chapters.values():
        if chapter.file == relative:
            import jupytext

            nb = jupytext.reads(source[0], fmt="md:myst")
            inject_captions(nb, manifest, chapter, "book")
            source[0] = jupytext.writes(nb, fmt="md:myst")
            return
