"""The book's page: chapter code and what it prints fit ``COLUMNS`` characters.

from cqsm.pipeline.page import say
say(f"TD3 reaches {value:.0f} on Hopper-v5 at 100k steps, ...")   # wrapped to the page
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from pprint import pprint

from cqsm.pipeline.manifest import find_root

__all__ = ["COLUMNS", "say", "count", "show"]

COLUMNS = 88
"""The widest line a chapter's code or printed output may have (``tests/test_chapters.py``)."""


def say(text: str) -> None:
    """Print a sentence wrapped to the page, continuation lines indented two spaces beyond
    the sentence's own indentation."""
    indent = " " * (len(text) - len(text.lstrip()) + 2)
    print(textwrap.fill(text, width=COLUMNS, subsequent_indent=indent))


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is one: ``count(1, "seed")`` is "1 seed",
    ``count(3, "seed")`` "3 seeds"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def show(settings) -> None:
    """Print a chapter's settings (a dataclass) to the page, every path under the repository
    root (a ``Path`` or a string, in the settings or in a dataclass, tuple or dict in them)
    written relative to it, so that the page reads the same on every machine (a scratch folder
    elsewhere is printed as it is)."""
    root = find_root()

    def mine(value):
        if isinstance(value, Path):
            return value.relative_to(root) if value.is_relative_to(root) else value
        if isinstance(value, str) and Path(value).is_absolute():
            return str(mine(Path(value)))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = [f for f in dataclasses.fields(value) if f.init]
            return dataclasses.replace(
                value, **{f.name: mine(getattr(value, f.name)) for f in fields}
            )
        if isinstance(value, tuple | list):
            return type(value)(mine(v) for v in value)
        if isinstance(value, dict):
            return {k: mine(v) for k, v in value.items()}
        return value

    pprint(mine(settings), width=COLUMNS)
