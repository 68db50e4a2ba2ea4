"""The chapters' code reads like a book page: short lines, short cells, formatted code.

Every code cell of every ``book/ch*.md`` has lines of at most 88 characters, at most 40 lines,
and is left unchanged by ``ruff format --line-length 88`` (the library itself keeps the
configured 100; a book page is narrower).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from cqsm.pipeline.page import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("ch*.md"))
MAX_LINE = COLUMNS
MAX_CELL_LINES = 40
RUFF_FORMAT = ["format", "--isolated", f"--line-length={MAX_LINE}", "--target-version=py311"]

_FENCE = re.compile(r"^(`{3,})\{code-cell\}")


@dataclass
class CodeCell:
    line: int
    """The 1-based line of the cell's opening fence in the chapter."""
    options: list[str]
    """The cell's MyST options: ``:key: value`` lines or a ``---`` YAML block."""
    code: list[str]
    """The code, line by line, without the options."""


def code_cells(text: str) -> list[CodeCell]:
    """The ``{code-cell}`` blocks of a MyST markdown notebook, options split from the code."""
    lines = text.split("\n")
    cells, i = [], 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start, close = i, fence.group(1)
        i += 1
        body = []
        while i < len(lines) and lines[i].rstrip() != close:
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start + 1}: the code cell is never closed")
        i += 1
        options: list[str] = []
        if body and body[0].strip() == "---":
            end = body.index("---", 1)
            options, body = body[: end + 1], body[end + 1 :]
        else:
            while body and body[0].startswith(":"):
                options.append(body.pop(0))
        cells.append(CodeCell(start + 1, options, body))
    return cells


def ruff_command() -> list[str]:
    """The ruff of this Python: the script next to ``sys.executable``, else ``-m ruff``."""
    script = Path(sys.executable).with_name("ruff")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ruff"]


def layout_problems(text: str) -> list[str]:
    """Lines over ``MAX_LINE`` characters and cells over ``MAX_CELL_LINES`` lines."""
    problems = []
    for cell in code_cells(text):
        first = cell.line + 1 + len(cell.options)
        for k, line in enumerate(cell.code):
            if len(line) > MAX_LINE:
                problems.append(f"line {first + k}: {len(line)} characters > {MAX_LINE}")
        if len(cell.code) > MAX_CELL_LINES:
            problems.append(
                f"cell at line {cell.line}: {len(cell.code)} lines > {MAX_CELL_LINES}; "
                "split it where it changes subject"
            )
    return problems


def format_problems(text: str, folder: Path) -> list[str]:
    """The cells that ``ruff format --line-length 88`` would change, with its diff."""
    cells = code_cells(text)
    for cell in cells:
        (folder / f"cell_line_{cell.line}.py").write_text("\n".join(cell.code) + "\n")
    if not cells:
        return []
    result = subprocess.run(
        [*ruff_command(), *RUFF_FORMAT, "--diff", "."],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    if result.returncode == 0:
        return []
    if "would be reformatted" not in result.stderr + result.stdout:
        raise RuntimeError(f"ruff failed:\n{result.stdout}\n{result.stderr}")
    return [result.stdout]


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_lines_and_cells_are_short(path):
    problems = layout_problems(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_code_is_formatted(path, tmp_path):
    problems = format_problems(path.read_text(encoding="utf-8"), tmp_path)
    assert not problems, (
        f"{path.relative_to(ROOT)}: `ruff format --line-length 88` would change these cells "
        "(the file names give the line of each cell's fence):\n" + "\n".join(problems)
    )


_INCLUDE = re.compile(r"^```\{literalinclude\} (\S+)\n((?::\w+:.*\n)*)```", re.M)


def included_code(text: str, chapter: Path) -> list[tuple[str, list[str]]]:
    """The library code a chapter shows with ``{literalinclude}`` and ``:pyobject:``, as the
    page shows it (``:dedent:`` given: without the common indentation)."""
    shown = []
    for match in _INCLUDE.finditer(text):
        options = dict(re.findall(r"^:(\w+):\s*(.*)$", match.group(2), re.M))
        if "pyobject" not in options:
            continue
        source = (chapter.parent / match.group(1)).read_text()
        node = _find(ast.parse(source), options["pyobject"].split("."))
        start = min([d.lineno for d in node.decorator_list] + [node.lineno])
        lines = source.splitlines()[start - 1 : node.end_lineno]
        if "dedent" in options:
            lines = textwrap.dedent("\n".join(lines)).splitlines()
        shown.append((options["pyobject"], lines))
    return shown


def _find(tree, names):
    for node in tree.body:
        if getattr(node, "name", None) == names[0]:
            return node if len(names) == 1 else _find(node, names[1:])
    raise LookupError(f"no {'.'.join(names)}")


@pytest.mark.parametrize("path", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_library_code_shown_in_a_chapter_fits_the_page(path):
    for name, lines in included_code(path.read_text(encoding="utf-8"), path):
        wide = [line for line in lines if len(line) > MAX_LINE]
        assert not wide, f"{path.name} shows {name} with lines over {MAX_LINE}: {wide}"


def test_included_code_is_found():
    here = ROOT / "book" / "x.md"
    text = "```{literalinclude} ../cqsm/rl/agents/cqsm.py\n:pyobject: CQSMAgent.update\n```\n"
    ((name, lines),) = included_code(text, here)
    assert name == "CQSMAgent.update" and lines[0].startswith("    def update(")
    ((_, lines),) = included_code(text.replace("update\n", "update\n:dedent:\n"), here)
    assert lines[0].startswith("def update(")


# ---------------------------------------------------------------------------------------------
# The checks themselves
# ---------------------------------------------------------------------------------------------

SAMPLE = """\
Some prose, which may be as long as it likes: it is not code, and the book wraps it anyway.

```{code-cell} ipython3
:tags: [hide-input]
import numpy as np
```

```{code-cell} ipython3
---
mystnb:
  figure:
    name: fig-x
---
x = np.arange(3)
```
"""


def test_cells_and_their_options_are_found():
    cells = code_cells(SAMPLE)
    assert [c.line for c in cells] == [3, 8]
    assert cells[0].options == [":tags: [hide-input]"]
    assert cells[0].code == ["import numpy as np"]
    assert cells[1].options[0] == "---" and cells[1].options[-1] == "---"
    assert cells[1].code == ["x = np.arange(3)"]
    assert layout_problems(SAMPLE) == []


def test_a_long_line_and_a_long_cell_are_caught():
    long_line = "y = " + " + ".join(["x"] * 30)  # 121 characters
    text = SAMPLE.replace("x = np.arange(3)", long_line)
    assert layout_problems(text) == ["line 14: 121 characters > 88"]
    text = SAMPLE.replace("import numpy as np", "\n".join(["x = 1"] * 41))
    (problem,) = layout_problems(text)
    assert problem.startswith("cell at line 3: 41 lines > 40")


def test_unformatted_code_is_caught(tmp_path):
    assert format_problems(SAMPLE, tmp_path) == []
    (tmp_path / "again").mkdir()
    problems = format_problems(SAMPLE.replace("np.arange(3)", "np.arange( 3 )"), tmp_path / "again")
    assert len(problems) == 1 and "np.arange(3)" in problems[0]


def test_the_chapters_are_found():
    assert len(CHAPTERS) >= 7, CHAPTERS


def test_count_says_one_seed_and_many_seeds():
    from cqsm.pipeline.page import count

    assert [count(n, "seed") for n in (0, 1, 2)] == ["0 seeds", "1 seed", "2 seeds"]


def test_show_prints_settings_with_paths_under_the_repository_relative_to_it(capsys):
    from cqsm.pipeline.manifest import find_root
    from cqsm.pipeline.page import show

    @dataclass
    class Bench:
        out: str

    @dataclass
    class Settings:
        results: Path
        scratch: Path
        folders: tuple = ()
        bench: Bench | None = None
        seeds: tuple = (0, 1)

    root = find_root()
    results = root / "paper_figures" / "results"
    bench = Bench(str(results / "bench"))
    show(Settings(results, Path("/tmp/cqsm-x"), (results / "a", results / "b"), bench))
    text = capsys.readouterr().out
    assert "PosixPath('paper_figures/results')" in text and str(root) not in text
    assert "PosixPath('paper_figures/results/a')" in text and "/tmp/cqsm-x" in text
    assert "Bench(out='paper_figures/results/bench')" in text and "seeds=(0, 1)" in text
    assert max(len(line) for line in text.splitlines()) <= COLUMNS
