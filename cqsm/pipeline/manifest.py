"""The figure manifest, ``paper_figures/manifest.yml``, and the repository layout it describes.

Every figure of the book and of the paper is drawn by one code cell of one chapter. The manifest
lists the profiles (what each is for), the chapters in book order (their file, and their
parameters and time limit for each profile) and every figure (its id, the chapter that draws it,
its caption). ``load_manifest`` reads it and checks it, reporting every problem at once.

:mod:`cqsm.pipeline.figures` runs the chapters it lists; :mod:`cqsm.pipeline.book` builds the
book from them.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MANIFEST = Path("paper_figures/manifest.yml")

_CHAPTER_KEYS = {"name", "file", "parameters", "timeout"}
_FIGURE_KEYS = {"id", "chapter", "caption"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_FIGURE_ID = re.compile(r"^fig-[a-z0-9][a-z0-9-]*$")


class PipelineError(RuntimeError):
    """A problem the user has to fix; the message says what is wrong and what to do."""


@dataclass(frozen=True)
class Chapter:
    """One entry of ``chapters:``: a MyST notebook and how to run it at each profile."""

    name: str
    file: Path  # relative to the repository root, e.g. book/ch02_action_diffusion.md
    parameters: Mapping[str, Mapping[str, Any]]  # profile -> papermill parameters
    timeout: Mapping[str, int]  # profile -> seconds any one cell may run


@dataclass(frozen=True)
class Figure:
    """One entry of ``figures:``: the figure's id, the chapter that draws it, its caption."""

    id: str
    chapter: str
    caption: str


@dataclass(frozen=True)
class Manifest:
    """The checked content of the manifest of the repository at ``root``."""

    root: Path
    profiles: Mapping[str, str]  # name -> what the profile is for
    chapters: Mapping[str, Chapter]  # in book order
    figures: Mapping[str, Figure]

    def figures_of(self, chapter: str) -> list[Figure]:
        return [fig for fig in self.figures.values() if fig.chapter == chapter]

    def check_profile(self, profile: str) -> None:
        if profile not in self.profiles:
            raise PipelineError(
                f"unknown profile {profile!r}; {MANIFEST} defines {quoted(self.profiles)}"
            )

    def select(self, names: list[str] | None) -> list[Chapter]:
        """The chapters called ``names`` (all of them, in book order, for None or [])."""
        if not names:
            return list(self.chapters.values())
        unknown = [name for name in names if name not in self.chapters]
        if unknown:
            raise PipelineError(
                f"unknown chapter {quoted(unknown)}; {MANIFEST} lists {quoted(self.chapters)}"
            )
        return [self.chapters[name] for name in dict.fromkeys(names)]


def quoted(items) -> str:
    """``'a', 'b'`` for messages, or ``none``."""
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
        if not _has_fields(entry, _FIGURE_KEYS, "id, chapter, caption", where, problems):
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
                f"{where}: unknown chapter {entry['chapter']!r} (chapters: {quoted(chapters)})"
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


def _has_fields(entry: dict, keys: set, allowed: str, where: str, problems: list[str]) -> bool:
    """Report missing and unknown fields of ``entry``; False when a required field is missing."""
    missing, extra = sorted(keys - set(entry)), sorted(set(entry) - keys)
    if missing:
        problems.append(f"{where}: missing field {quoted(missing)}")
    if extra:
        problems.append(f"{where}: unknown field {quoted(extra)} (allowed: {allowed})")
    return not missing


def _parse_chapter(
    entry: Any, where: str, profiles: Mapping[str, str], problems: list[str]
) -> Chapter | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected a mapping with name, file, parameters and timeout")
        return None
    if isinstance(entry.get("name"), str):
        where = f"chapter {entry['name']!r}"
    if not _has_fields(entry, _CHAPTER_KEYS, "name, file, parameters, timeout", where, problems):
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
                    f"{where}: {key} for unknown profile {profile!r} (profiles: {quoted(profiles)})"
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
# Where the pipeline writes
# ---------------------------------------------------------------------------------------------


def figure_dir(root: Path, profile: str) -> Path:
    """``paper_figures/figures/<profile>``: the figure files of every chapter run at ``profile``."""
    return Path(root).resolve() / "paper_figures" / "figures" / profile


def executed_notebook(root: Path, profile: str, chapter: Chapter) -> Path:
    """``_build/executed/<profile>/<chapter file>.ipynb``: the chapter as run at ``profile``."""
    return Path(root) / "_build" / "executed" / profile / chapter.file.with_suffix(".ipynb")


def display_path(path: Path) -> str:
    """A path as messages show it: relative to the current folder when inside it."""
    path = Path(path).resolve()
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)
