"""The book's page: chapter code and what it prints fit ``COLUMNS`` characters.

from cqsm.pipeline.page import say
say(f"TD3 reaches {value:.0f} on Hopper-v5 at 100k steps, ...")   # wrapped to the page
"""

from __future__ import annotations

import textwrap

__all__ = ["COLUMNS", "say", "count"]

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
