"""The figure pipeline: the manifest, caption injection, the papermill driver and the book build.

Modules tested: ``cqsm.pipeline.manifest``, ``cqsm.pipeline.figures``, ``cqsm.pipeline.book`` and
``cqsm.cli``.

The tests marked ``built_outputs`` check what ``make test`` built just before running them
(``cqsm figures --profile ci`` and ``cqsm book --profile ci --strict``). ``make test`` sets
``CQSM_BUILT_SINCE`` to the time it started: then missing or older outputs fail. Without it
(a plain ``pytest``) they are checked if present and skipped if absent.
"""

import copy
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import jupytext
import nbformat
import pytest
import yaml

from cqsm import cli
from cqsm.pipeline import book, figures
from cqsm.pipeline.manifest import (
    MANIFEST,
    Chapter,
    Figure,
    PipelineError,
    executed_notebook,
    figure_dir,
    load_manifest,
    parse_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
CI = "ci"


# ---------------------------------------------------------------------------------------------
# Checks shared by the scratch-book test and the tests of the real build
# ---------------------------------------------------------------------------------------------


class _FigureFinder(HTMLParser):
    """The images and the text inside the element whose id is ``target``."""

    def __init__(self, target):
        super().__init__()
        self.target, self.tag, self.depth = target, None, 0
        self.found, self.images, self.text = False, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.tag is None and not self.found and attrs.get("id") == self.target:
            self.tag, self.depth, self.found = tag, 1, True
        elif self.tag is not None:
            if tag == self.tag:
                self.depth += 1
            if tag == "img":
                self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if self.tag is not None and tag == self.tag:
            self.depth -= 1
            if self.depth == 0:
                self.tag = None

    def handle_data(self, data):
        if self.tag is not None:
            self.text.append(data)


def check_figure_in_page(page: Path, fig: Figure, chapter: Chapter) -> None:
    """The page shows figure ``fig`` as an image with the manifest caption and its provenance."""
    finder = _FigureFinder(fig.id)
    finder.feed(page.read_text(encoding="utf-8"))
    assert finder.found, f"{page} has no element with id {fig.id!r}"
    assert finder.images, f"figure {fig.id!r} in {page} holds no image"
    for src in finder.images:
        assert (page.parent / src).is_file(), f"{page}: image {src} of {fig.id!r} is missing"
    text = " ".join("".join(finder.text).split())
    provenance = f"Drawn by the cell named {fig.id} in {chapter.file.as_posix()}"
    assert provenance in text, f"caption of {fig.id!r} in {page} lacks {provenance!r}: {text!r}"
    first_words = " ".join(fig.caption.split()[:3])
    if "$" not in first_words:
        assert first_words in text, f"caption of {fig.id!r} in {page}: {text!r}"


def check_no_injected_parameters(page: Path) -> None:
    """The page does not show papermill's injected parameter cell (only the chapter's own)."""
    html = page.read_text(encoding="utf-8")
    assert "tag_injected-parameters" not in html, f"{page} shows the injected parameter cell"
    assert "tag_parameters" in html, f"{page} lost the chapter's parameters cell"


# ---------------------------------------------------------------------------------------------
# (a) The manifest
# ---------------------------------------------------------------------------------------------


def tiny_manifest():
    return {
        "profiles": {"ci": "tiny", "book": "default"},
        "chapters": [
            {
                "name": "scratch",
                "file": "book/scratch.md",
                "parameters": {"ci": {"profile": "ci"}, "book": {"profile": "book"}},
                "timeout": {"ci": 120, "book": 600},
            }
        ],
        "figures": [{"id": "fig-line", "chapter": "scratch", "caption": "A line."}],
    }


def test_tiny_manifest_parses():
    manifest = parse_manifest(tiny_manifest(), root=Path("."))
    assert list(manifest.chapters) == ["scratch"]
    assert manifest.chapters["scratch"].file == Path("book/scratch.md")
    assert [f.id for f in manifest.figures_of("scratch")] == ["fig-line"]


def _drop(key):
    def edit(m):
        del m["figures"][0][key]

    return edit


BAD_MANIFESTS = {
    "unknown chapter": (
        lambda m: m["figures"][0].update(chapter="ch99"),
        "figure 'fig-line': unknown chapter 'ch99' (chapters: 'scratch')",
    ),
    "duplicate figure": (
        lambda m: m["figures"].append(dict(m["figures"][0])),
        "figure 'fig-line': duplicate figure id 'fig-line'",
    ),
    "duplicate chapter": (
        lambda m: m["chapters"].append(copy.deepcopy(m["chapters"][0])),
        "duplicate chapter name 'scratch'",
    ),
    "missing caption": (_drop("caption"), "figure 'fig-line': missing field 'caption'"),
    "missing timeout": (
        lambda m: m["chapters"][0].pop("timeout"),
        "chapter 'scratch': missing field 'timeout'",
    ),
    "unknown field": (
        lambda m: m["figures"][0].update(captoin="typo"),
        "figure 'fig-line': unknown field 'captoin'",
    ),
    "profile without parameters": (
        lambda m: m["chapters"][0]["parameters"].pop("book"),
        "chapter 'scratch': no parameters for profile 'book'",
    ),
    "parameters of another profile": (
        lambda m: m["chapters"][0]["parameters"].update(ci={"profile": "book"}),
        "parameters for profile 'ci' must set profile: ci",
    ),
    "bad timeout": (
        lambda m: m["chapters"][0]["timeout"].update(ci=0),
        "timeout for 'ci' must be a positive whole number of seconds",
    ),
    "bad figure id": (
        lambda m: m["figures"][0].update(id="Line"),
        "id 'Line' must look like 'fig-kl-rate'",
    ),
    "file not named after chapter": (
        lambda m: m["chapters"][0].update(file="book/other.md"),
        "file 'book/other.md' must be named after the chapter (scratch.md)",
    ),
    "no figures list": (lambda m: m.update(figures={}), "'figures' must be a list"),
    "typo at top level": (lambda m: m.update(figure=[]), "unknown top-level key 'figure'"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifest_is_refused_clearly(case):
    edit, message = BAD_MANIFESTS[case]
    data = tiny_manifest()
    edit(data)
    with pytest.raises(PipelineError) as err:
        parse_manifest(data, root=Path("."), source="manifest.yml")
    assert str(err.value).startswith("manifest.yml is not valid:")
    assert message in str(err.value)


def test_every_problem_is_reported_at_once():
    data = tiny_manifest()
    data["figures"][0]["chapter"] = "ch99"
    del data["chapters"][0]["timeout"]
    with pytest.raises(PipelineError) as err:
        parse_manifest(data, root=Path("."))
    assert "missing field 'timeout'" in str(err.value)
    assert "unknown chapter 'ch99'" in str(err.value)


def test_manifest_that_is_not_yaml(tmp_path):
    (tmp_path / "paper_figures").mkdir()
    (tmp_path / MANIFEST).write_text("chapters: [\n")
    with pytest.raises(PipelineError, match="is not valid YAML"):
        load_manifest(tmp_path)


def test_unknown_profile_and_chapter_are_named():
    manifest = parse_manifest(tiny_manifest(), root=Path("."))
    with pytest.raises(PipelineError, match="unknown profile 'paper'; .* 'ci', 'book'"):
        manifest.check_profile("paper")
    with pytest.raises(PipelineError, match="unknown chapter 'ch4'; .* lists 'scratch'"):
        manifest.select(["ch4"])


def test_real_manifest_matches_the_toc():
    """The toc's notebooks are the manifest's chapters, in order; its other pages (the API
    reference) are plain MyST pages."""
    manifest = load_manifest(ROOT)
    assert set(manifest.profiles) == {"ci", "book", "paper"}
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [d for d in book.toc_files(toc) if d != toc["root"]]
    chapters = [d for d in pages if book._is_notebook(ROOT / f"{d}.md")]
    assert chapters == [c.file.with_suffix("").as_posix() for c in manifest.chapters.values()]
    for chapter in manifest.chapters.values():
        assert manifest.figures_of(chapter.name), f"{chapter.name} has no figures"


# ---------------------------------------------------------------------------------------------
# (b) Caption injection and the checks of a chapter's cells
# ---------------------------------------------------------------------------------------------


def test_captions_are_injected_from_the_manifest():
    manifest = parse_manifest(tiny_manifest(), root=Path("."))
    chapter = manifest.chapters["scratch"]
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Scratch"),
        nbformat.v4.new_code_cell('profile = "book"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "fig", metadata={"mystnb": {"figure": {"name": "fig-line", "caption": "old"}}}
        ),
        nbformat.v4.new_code_cell("x = 1", metadata={"mystnb": {"number_source_lines": True}}),
    ]
    before = copy.deepcopy(nb)
    figures.inject_captions(nb, manifest, chapter, "ci")
    assert nb.cells[2].metadata.mystnb.figure == {
        "name": "fig-line",
        "caption": "A line. Drawn by the cell named `fig-line` in `book/scratch.md` "
        "(profile `ci`).",
    }
    for index in (0, 1, 3):
        assert nb.cells[index] == before.cells[index]


def test_the_injected_parameter_cell_is_left_out_of_the_book():
    """papermill adds a cell tagged injected-parameters after the parameters cell; the book
    must not show it (tag remove-cell), and nothing else changes."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('profile = "book"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            '# Parameters\nprofile = "ci"\n', metadata={"tags": ["injected-parameters"]}
        ),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["hide-input"]}),
    ]
    before = copy.deepcopy(nb)
    figures.hide_injected_parameters(nb)
    assert nb.cells[1].metadata.tags == ["injected-parameters", "remove-cell"]
    for index in (0, 2):
        assert nb.cells[index] == before.cells[index]
    figures.hide_injected_parameters(nb)  # once is enough
    assert nb.cells[1].metadata.tags == ["injected-parameters", "remove-cell"]


def test_staging_hides_the_injected_cell_of_older_notebooks(tmp_path):
    write_scratch_repo(tmp_path, scratch_chapter())
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "_config.yml").write_text("title: Scratch\n")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    nb = jupytext.read(tmp_path / "book" / "scratch.md")
    injected = nbformat.v4.new_code_cell(
        'profile = "ci"', metadata={"tags": ["injected-parameters"]}
    )
    nb.cells.insert(1 + next(i for i, c in enumerate(nb.cells) if c.cell_type == "code"), injected)
    executed = tmp_path / "_build" / "executed" / CI / "book" / "scratch.ipynb"
    executed.parent.mkdir(parents=True)
    nbformat.write(nb, executed)
    stage = book.stage_book(tmp_path, CI)
    staged = nbformat.read(stage / "book" / "scratch.ipynb", as_version=4)
    tagged = [c for c in staged.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "remove-cell" in tagged[0].metadata.tags


def test_a_figure_cell_must_display_one_image_only():
    image = nbformat.v4.new_output("display_data", data={"image/png": "iVBO", "text/plain": "F"})
    text = nbformat.v4.new_output("execute_result", data={"text/plain": "6"}, execution_count=1)
    log = nbformat.v4.new_output("stream", name="stdout", text="fitting\\n")
    for outputs, ok in [([image], True), ([log, image], True), ([], False), ([text, image], False)]:
        cell = nbformat.v4.new_code_cell("fig", outputs=outputs)
        problem = figures._display_problem(cell)
        assert (problem is None) == ok, outputs
    assert "it displayed: text/plain; image/png, text/plain" in figures._display_problem(
        nbformat.v4.new_code_cell("fig", outputs=[text, image])
    )


HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# Scratch

"""
TOC = "format: jb-book\nroot: book/intro\nchapters:\n- file: book/scratch\n"
PARAMETERS = '```{code-cell} ipython3\n:tags: [parameters]\n\nprofile = "book"\n```\n\n'


def figure_cell(fig_id, body):
    options = f"---\nmystnb:\n  figure:\n    name: {fig_id}\n---\n"
    return f"```{{code-cell}} ipython3\n{options}{body}\n```\n\n"


def write_scratch_repo(root, chapter_text, manifest=None):
    (root / "paper_figures").mkdir(parents=True, exist_ok=True)
    (root / "book").mkdir(exist_ok=True)
    (root / MANIFEST).write_text(yaml.safe_dump(manifest or tiny_manifest()))
    (root / "book" / "scratch.md").write_text(chapter_text)
    return load_manifest(root)


@pytest.mark.parametrize(
    "cells, message",
    [
        (figure_cell("fig-line", "1"), "needs exactly one code cell tagged parameters"),
        (PARAMETERS, "lists figure 'fig-line' for this chapter, but no code cell has"),
        (
            PARAMETERS + figure_cell("fig-line", "1") + figure_cell("fig-other", "2"),
            "figure cell 'fig-other' is not in paper_figures/manifest.yml",
        ),
        (
            PARAMETERS + figure_cell("fig-line", "1") + figure_cell("fig-line", "2"),
            "two cells draw figure 'fig-line'",
        ),
    ],
)
def test_chapter_cells_are_checked_before_running(tmp_path, cells, message):
    manifest = write_scratch_repo(tmp_path, HEADER + cells)
    with pytest.raises(PipelineError) as err:
        figures.read_chapter(manifest, manifest.chapters["scratch"])
    assert message in str(err.value)
    assert str(err.value).startswith("book/scratch.md:")


def test_missing_chapter_file_is_named(tmp_path):
    manifest = write_scratch_repo(tmp_path, HEADER)
    (tmp_path / "book" / "scratch.md").unlink()
    with pytest.raises(PipelineError, match=r"book/scratch.md does not exist \(chapter 'scratch'"):
        figures.read_chapter(manifest, manifest.chapters["scratch"])


def test_direct_builds_get_the_manifest_captions(tmp_path):
    manifest = write_scratch_repo(tmp_path, HEADER + PARAMETERS + figure_cell("fig-line", "1"))
    env = SimpleNamespace(doc2path=lambda docname: str(tmp_path / f"{docname}.md"))
    app = SimpleNamespace(srcdir=str(tmp_path), env=env)
    source = [(tmp_path / "book" / "scratch.md").read_text()]
    book._caption_chapter_source(app, "book/scratch", source)
    nb = jupytext.reads(source[0], fmt="md:myst")
    (cell,) = [c for c in nb.cells if figures.figure_name(c)]
    expected = figures.caption(manifest.figures["fig-line"], manifest.chapters["scratch"], "book")
    assert cell.metadata["mystnb"]["figure"]["caption"] == expected
    other = ["# Intro\n"]
    book._caption_chapter_source(app, "book/intro", other)
    assert other == ["# Intro\n"]


def test_book_needs_executed_notebooks(tmp_path):
    write_scratch_repo(tmp_path, HEADER + PARAMETERS + figure_cell("fig-line", "1"))
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "_config.yml").write_text("title: Scratch\n")
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    with pytest.raises(PipelineError, match=r"run `cqsm figures --profile ci` first"):
        book.stage_book(tmp_path, "ci")


def test_cli_check_and_errors(tmp_path, capsys):
    write_scratch_repo(tmp_path, HEADER + PARAMETERS + figure_cell("fig-line", "1"))
    assert cli.main(["figures", "--check", "--profile", "ci", "--root", str(tmp_path)]) == 0
    assert "1 chapters: their figure cells agree" in capsys.readouterr().out
    assert cli.main(["figures", "--profile", "paper", "--root", str(tmp_path)]) == 1
    assert "cqsm figures: error: unknown profile 'paper'" in capsys.readouterr().err
    assert cli.main(["book", "--root", str(tmp_path / "book")]) == 1
    assert "no paper_figures/manifest.yml in" in capsys.readouterr().err


def test_python_m_cqsm_help():
    result = subprocess.run(
        [sys.executable, "-m", "cqsm", "figures", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for option in (
        "--profile",
        "--chapter",
        "--keep-going",
        "--log-output",
        "--jobs",
        "--check",
        "--root",
    ):
        assert option in result.stdout


# ---------------------------------------------------------------------------------------------
# (c) End to end on a scratch book: papermill, figure checks, staging, a strict build
# ---------------------------------------------------------------------------------------------

DRAW = """\
import os
from pathlib import Path

import matplotlib.pyplot as plt

assert Path.cwd().name == "book", Path.cwd()
out = Path(os.environ["CQSM_FIGURE_DIR"])
n = {"ci": 4, "book": 40}[profile]
fig, ax = plt.subplots(figsize=(3, 2))
ax.plot(range(n), [k * k for k in range(n)])
for suffix in SUFFIXES:
    if suffix == "csv":
        (out / "fig-line.csv").write_text("k,k2\\n" + "".join(f"{k},{k * k}\\n" for k in range(n)))
    else:
        fig.savefig(out / f"fig-line.{suffix}")"""


def scratch_chapter(suffixes=("pdf", "png", "csv"), extra=""):
    body = f"SUFFIXES = {list(suffixes)!r}\n{extra}{DRAW}"
    return HEADER + PARAMETERS + "Some text.\n\n" + figure_cell("fig-line", body)


@pytest.mark.slow
def test_end_to_end_on_a_scratch_book(tmp_path, capsys):
    manifest = write_scratch_repo(tmp_path, scratch_chapter())
    (tmp_path / "_toc.yml").write_text(TOC)
    shutil.copy(ROOT / "_config.yml", tmp_path / "_config.yml")  # the real config, strictly
    shutil.copytree(ROOT / "book" / "_static", tmp_path / "book" / "_static")  # its style sheet
    (tmp_path / "book" / "references.bib").write_text(
        "@book{doe2020, title = {A Book}, author = {Doe, Jane}, year = {2020}, "
        "publisher = {Nobody}}\n"
    )
    (tmp_path / "book" / "intro.md").write_text(
        "# Intro\n\nSee {doc}`scratch` and {cite:p}`doe2020`.\n\n## References\n\n"
        "```{bibliography}\n```\n"
    )
    chapter = manifest.chapters["scratch"]
    fig = manifest.figures["fig-line"]

    runs = figures.run_figures(tmp_path, CI)
    out = capsys.readouterr().out
    assert "[1/1] scratch: running book/scratch.md at profile ci" in out
    assert "fig-line" in out and "pdf png csv" in out
    fig_dir = tmp_path / "paper_figures" / "figures" / CI
    for suffix in figures.FIGURE_SUFFIXES:
        assert (fig_dir / f"fig-line{suffix}").stat().st_size > 0
    assert (fig_dir / "fig-line.csv").read_text().count("\n") == 1 + 4  # the ci parameter
    executed = tmp_path / "_build" / "executed" / CI / "book" / "scratch.ipynb"
    assert runs[0].notebook.resolve() == executed.resolve()
    nb = nbformat.read(executed, as_version=4)
    cell = next(c for c in nb.cells if figures.figure_name(c) == "fig-line")
    assert cell.metadata.mystnb.figure.caption == figures.caption(fig, chapter, CI)
    assert any(o.get("output_type") == "display_data" for o in cell.outputs)
    assert nb.metadata.papermill.input_path == "book/scratch.md"
    assert not list(executed.parent.glob("*.partial.ipynb"))
    (injected,) = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "remove-cell" in injected.metadata.tags

    index = book.build_book(tmp_path, CI, strict=True)
    assert index == tmp_path.resolve() / "_build" / "html" / CI / "index.html"
    check_figure_in_page(index.parent / "book" / "scratch.html", fig, chapter)
    check_no_injected_parameters(index.parent / "book" / "scratch.html")

    # A chapter that stops leaves no executed notebook, keeps the failed one, and says why.
    (tmp_path / "book" / "scratch.md").write_text(scratch_chapter(extra="1 / 0\n"))
    with pytest.raises(PipelineError) as err:
        figures.run_figures(tmp_path, CI)
    assert "ZeroDivisionError" in str(err.value)
    assert not executed.exists()
    assert executed.with_name("scratch.failed.ipynb").exists()
    with pytest.raises(PipelineError, match="run `cqsm figures --profile ci` first"):
        book.stage_book(tmp_path, CI)

    # A figure file left from an earlier run does not count.
    (tmp_path / "book" / "scratch.md").write_text(scratch_chapter(suffixes=("pdf", "png")))
    with pytest.raises(PipelineError) as err:
        figures.run_figures(tmp_path, CI)
    assert "fig-line.csv: not rewritten by this run" in str(err.value)
    (fig_dir / "fig-line.csv").unlink()
    with pytest.raises(PipelineError, match="fig-line.csv: missing"):
        figures.run_figures(tmp_path, CI)


RENDEZVOUS = """\
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt

# Each chapter marks that it started, then waits for the other: both finish only side by side.
here = Path(os.environ["CQSM_FIGURE_DIR"])
(here / "{me}.started").touch()
deadline = time.time() + 60
while not (here / "{other}.started").exists():
    assert time.time() < deadline, "the other chapter never ran alongside"
    time.sleep(0.05)
{fail}fig, ax = plt.subplots(figsize=(3, 2))
for suffix in ("pdf", "png", "csv"):
    if suffix == "csv":
        (here / "{fig}.csv").write_text("k\\n1\\n")
    else:
        fig.savefig(here / f"{fig}.{{suffix}}")"""


def two_chapter_repo(root, fail=""):
    manifest = tiny_manifest()
    manifest["chapters"].append(dict(manifest["chapters"][0], name="second", file="book/second.md"))
    manifest["figures"].append({"id": "fig-other", "chapter": "second", "caption": "Another."})
    for name, me, other, fig in (
        ("scratch", "a", "b", "fig-line"),
        ("second", "b", "a", "fig-other"),
    ):
        body = RENDEZVOUS.format(me=me, other=other, fig=fig, fail=fail if me == "b" else "")
        text = HEADER + PARAMETERS + figure_cell(fig, body)
        (root / "book").mkdir(parents=True, exist_ok=True)
        (root / "book" / f"{name}.md").write_text(text)
    (root / "paper_figures").mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).write_text(yaml.safe_dump(manifest))


@pytest.mark.slow
def test_chapters_run_side_by_side_with_jobs(tmp_path, capsys):
    two_chapter_repo(tmp_path)
    here = Path.cwd()
    runs = figures.run_figures(tmp_path, CI, jobs=2)  # each waits for the other to start
    assert Path.cwd() == here  # papermill's chdir into each chapter's folder is undone
    assert [run.chapter for run in runs] == ["scratch", "second"]  # in the manifest's order
    out = capsys.readouterr().out
    assert "[1/2] scratch: done in" in out and "[2/2] second: done in" in out
    executed = tmp_path / "_build" / "executed" / CI / "book"
    assert (executed / "scratch.ipynb").exists() and (executed / "second.ipynb").exists()

    # One fails: the other still finishes and keeps its notebook; the failure is raised.
    for marker in (tmp_path / "paper_figures" / "figures" / CI).glob("*.started"):
        marker.unlink()
    two_chapter_repo(tmp_path, fail="1 / 0\n")
    with pytest.raises(PipelineError, match="chapter 'second'") as err:
        figures.run_figures(tmp_path, CI, jobs=2)
    assert "ZeroDivisionError" in str(err.value)
    assert (executed / "scratch.ipynb").exists() and not (executed / "second.ipynb").exists()
    with pytest.raises(PipelineError, match="jobs must be at least 1; got 0"):
        figures.run_figures(tmp_path, CI, jobs=0)


@pytest.mark.slow
def test_cli_runs_a_chapter(tmp_path):
    write_scratch_repo(tmp_path, scratch_chapter())
    result = subprocess.run(
        [sys.executable, "-m", "cqsm", "figures", "--profile", "book", "--chapter", "scratch"],
        cwd=tmp_path / "book",  # the root is found above the current folder
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    csv = tmp_path / "paper_figures" / "figures" / "book" / "fig-line.csv"
    assert csv.read_text().count("\n") == 1 + 40


# ---------------------------------------------------------------------------------------------
# (d) What `make test` built: every figure file at ci, every chapter page with its figures
# ---------------------------------------------------------------------------------------------

REPO_MANIFEST = load_manifest(ROOT)


def _built_since():
    value = os.environ.get("CQSM_BUILT_SINCE")
    return float(value) if value else None


def _require(path: Path, what: str) -> Path:
    since = _built_since()
    if not path.exists():
        message = (
            f"{what} {path} is missing: run `cqsm figures --profile ci` and "
            "`cqsm book --profile ci` first (make test does)"
        )
        if since is None:
            pytest.skip(message)
        pytest.fail(message)
    if since is not None:
        assert path.stat().st_mtime >= since, f"{path} is older than this `make test` run"
    return path


@pytest.mark.built_outputs
@pytest.mark.parametrize("fig_id", list(REPO_MANIFEST.figures))
def test_built_figure_files(fig_id):
    folder = figure_dir(ROOT, CI)
    for suffix in figures.FIGURE_SUFFIXES:
        path = _require(folder / f"{fig_id}{suffix}", "figure file")
        assert path.stat().st_size > 0, f"{path} is empty"


@pytest.mark.built_outputs
@pytest.mark.parametrize("name", list(REPO_MANIFEST.chapters))
def test_built_chapter_page_shows_its_figures(name):
    chapter = REPO_MANIFEST.chapters[name]
    html = book.html_dir(ROOT, CI)
    _require(html / "index.html", "book page")
    page = _require(html / chapter.file.with_suffix(".html"), "chapter page")
    for fig in REPO_MANIFEST.figures_of(name):
        check_figure_in_page(page, fig, chapter)


@pytest.mark.built_outputs
@pytest.mark.parametrize("name", list(REPO_MANIFEST.chapters))
def test_built_chapter_page_hides_the_injected_parameters(name):
    chapter = REPO_MANIFEST.chapters[name]
    html = book.html_dir(ROOT, CI)
    _require(html / "index.html", "book page")
    check_no_injected_parameters(_require(html / chapter.file.with_suffix(".html"), "page"))


@pytest.mark.built_outputs
@pytest.mark.parametrize("name", list(REPO_MANIFEST.chapters))
def test_built_chapter_shows_no_stray_stderr(name):
    """A reader's page holds the chapter's own output: no library warning written to stderr."""
    chapter = REPO_MANIFEST.chapters[name]
    path = _require(executed_notebook(ROOT, CI, chapter), "executed notebook")
    stray = [
        "".join(output.get("text", ""))[:200]
        for cell in nbformat.read(path, as_version=4).cells
        for output in cell.get("outputs", [])
        if output.get("name") == "stderr"
    ]
    assert not stray, f"{path} has output on stderr: {stray}"


@pytest.mark.built_outputs
@pytest.mark.parametrize("name", list(REPO_MANIFEST.chapters))
def test_built_chapter_page_offers_its_executed_notebook(name):
    """The page's download button offers the chapter as the notebook `cqsm figures` executed,
    every output included (the book's source of the page, copied to _sources/)."""
    chapter = REPO_MANIFEST.chapters[name]
    html = book.html_dir(ROOT, CI)
    page = _require(html / chapter.file.with_suffix(".html"), "chapter page")
    source = Path("_sources") / chapter.file.with_suffix(".ipynb")
    assert f'href="../{source.as_posix()}"' in page.read_text(encoding="utf-8")
    offered = nbformat.read(_require(html / source, "downloadable notebook"), as_version=4)
    executed = nbformat.read(executed_notebook(ROOT, CI, chapter), as_version=4)

    def outputs(nb):
        return [cell.get("outputs", []) for cell in nb.cells]

    assert outputs(offered) == outputs(executed)
    assert any(outputs(offered)), f"{source} has no outputs"
