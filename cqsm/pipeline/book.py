"""The Jupyter Book: staged from the executed notebooks and built, or built straight from the .md.

``build_book`` stages a Jupyter Book source tree under ``_build/stage/<profile>`` from
``_toc.yml``, ``_config.yml`` (notebook execution off), the book's pages and the notebooks that
:mod:`cqsm.pipeline.figures` executed at ``<profile>``, and builds it, without executing
anything, into ``_build/html/<profile>``.

This module is also the small Sphinx extension that ``_config.yml`` loads: when the book is built
straight from the chapters' ``.md`` files (``jupyter-book build .``), their figure cells get the
manifest's captions, as the executed notebooks do; and the API reference's docstrings keep their
``Args:`` sections readable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cqsm.atomic import atomic_write_text
from cqsm.pipeline.figures import hide_injected_parameters, inject_captions, source_digest
from cqsm.pipeline.manifest import (
    MANIFEST,
    PipelineError,
    display_path,
    executed_notebook,
    load_manifest,
    quoted,
)

TOC = "_toc.yml"
CONFIG = "_config.yml"


def stage_dir(root: Path, profile: str) -> Path:
    """``_build/stage/<profile>``: the book's source tree as ``build_book`` stages it."""
    return Path(root) / "_build" / "stage" / profile


def html_dir(root: Path, profile: str) -> Path:
    """``_build/html/<profile>``: the built book."""
    return Path(root) / "_build" / "html" / profile


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
    import nbformat

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
        raise PipelineError(f"chapter {quoted(missing_from_toc)} of {MANIFEST} is not in {TOC}")

    stage = stage_dir(root, profile)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    shutil.copy2(root / TOC, stage / TOC)
    config = yaml.safe_load((root / CONFIG).read_text(encoding="utf-8")) or {}
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    atomic_write_text(stage / CONFIG, yaml.safe_dump(config, sort_keys=False))

    # The folders that hold the book's pages, less the chapter sources (their executed notebooks
    # go in instead): the intro, the bibliography, images and the like.
    chapter_sources = {(root / ch.file).resolve() for ch in manifest.chapters.values()}

    def ignore(directory, names):
        skip = set(_STAGE_IGNORE(directory, names))
        return skip | {n for n in names if (Path(directory) / n) in chapter_sources}

    for folder in sorted({Path(doc).parent for doc in docs} - {Path(".")}):
        if (root / folder).is_dir():
            shutil.copytree(root / folder, stage / folder, ignore=ignore, dirs_exist_ok=True)
    # The library's source, for the chapters' {literalinclude} of the real code.
    if (root / "cqsm").is_dir():
        shutil.copytree(
            root / "cqsm", stage / "cqsm", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
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
                    f"({display_path(executed)}): run `cqsm figures --profile {profile}` first"
                )
            target = stage / chapter.file.with_suffix(".ipynb")
            target.parent.mkdir(parents=True, exist_ok=True)
            nb = nbformat.read(executed, as_version=4)
            hide_injected_parameters(nb)  # also in notebooks executed before it was done there
            atomic_write_text(target, nbformat.writes(nb))
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
                f"{display_path(sources[0])} is a notebook in {TOC} but not a chapter of "
                f"{MANIFEST}: add it to the manifest so that `cqsm figures` executes it"
            )
        target = stage / sources[0].relative_to(root)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(sources[0], target)
    if stale:
        message = (
            f"chapter {quoted(ch.name for ch in stale)} changed since it was executed at profile "
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
    if config.get("logo"):
        files.append(config["logo"])
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
            f"the messages above say why. Files under {display_path(stage)} are copies of the "
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
            f"the build finished but these pages are missing from {display_path(target)}: "
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
    executed by `cqsm figures` do. Chapters run with their default parameters (profile book).
    For the API reference (book/api.md), the ``Args:`` sections of docstrings become field
    lists (see :func:`_google_sections`)."""
    app.connect("source-read", _caption_chapter_source)
    app.setup_extension("sphinx.ext.autodoc")
    app.connect("autodoc-process-docstring", _google_sections)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


_GOOGLE_SECTIONS = {"Args:", "Arguments:", "Returns:", "Raises:", "Yields:"}


def _google_sections(app, what, name, obj, options, lines: list[str]) -> None:
    """autodoc: a docstring of a class or function with Google-style sections (``Args:``) is
    rewritten by napoleon into field lists. Unlike ``sphinx.ext.napoleon`` itself, this leaves
    every other docstring alone: napoleon would read the first words of a settings field's
    docstring, up to a colon (``algorithm: one of ...``), as its type."""
    if what in ("attribute", "data", "property") or not _GOOGLE_SECTIONS & {
        line.strip() for line in lines
    }:
        return
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring

    lines[:] = GoogleDocstring(lines, Config(), what=what, name=name, obj=obj).lines()


def _caption_chapter_source(app, docname: str, source: list[str]) -> None:
    """Sphinx ``source-read``: caption the figure cells of a manifest chapter's source."""
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
