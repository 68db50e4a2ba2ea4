"""Settings dataclasses on the command line: one option per field, its docstring as the help.

Every settings dataclass documents each field with a string literal right below it (as in the
single-file RL implementations); :func:`add_arguments` turns those into ``--option`` help texts,
so ``cqsm train --help`` documents every setting from the one place it is defined.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import numbers
import textwrap
import types
import typing

__all__ = [
    "SettingsError",
    "check_positive",
    "check_widths",
    "field_docs",
    "settings_table",
    "add_arguments",
    "given",
]


class SettingsError(ValueError):
    """A setting out of its range, or unknown: says which, what it must be, what was given."""


def check_positive(
    settings, *names: str, integer: bool = False, optional: bool = False, zero: bool = False
) -> None:
    """Raise a :class:`SettingsError` unless every named field of ``settings`` is a positive
    (finite) number, or with ``integer=True`` a positive integer (``optional=True``: or None;
    ``zero=True``: or zero); the message names the field."""
    for name in names:
        value = getattr(settings, name)
        if optional and value is None:
            continue
        if integer:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1
        else:
            ok = isinstance(value, numbers.Real) and math.isfinite(value)
            ok = ok and (value > 0 or (zero and value == 0))
        if not ok:
            kind = ("non-negative " if zero else "positive ") + ("integer" if integer else "number")
            raise SettingsError(
                f"{type(settings).__name__}.{name} must be a {kind}; got {value!r}."
            )


def check_choice(settings, name: str, choices: tuple[str, ...], what: str) -> None:
    """Raise a :class:`SettingsError` unless the field ``name`` of ``settings`` is one of
    ``choices``; the message calls the value a ``what`` and lists the choices."""
    value = getattr(settings, name)
    if value not in choices:
        raise SettingsError(f"Unknown {what} {value!r}; choose one of {choices}.")


def check_widths(settings, *names: str) -> None:
    """Make every named field of ``settings`` a tuple of layer widths, raising a
    :class:`SettingsError` unless each width is a positive whole number."""
    for name in names:
        value = getattr(settings, name)
        widths = (value,) if isinstance(value, numbers.Real) else tuple(value)
        bad = [
            w for w in widths if not (isinstance(w, numbers.Real) and w == int(w) and int(w) >= 1)
        ]
        if bad:
            raise SettingsError(
                f"{type(settings).__name__}.{name} must be positive layer widths (such as 256 "
                f"256); got {value!r}. A layer needs at least one unit."
            )
        setattr(settings, name, tuple(int(w) for w in widths))


def field_docs(cls) -> dict[str, str]:
    """The docstring under each field of a dataclass, by field name."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def settings_table(cls):
    """Every field of a settings dataclass with its default and its docstring, as a DataFrame."""
    import pandas as pd

    docs = field_docs(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append({"setting": f.name, "default": repr(default), "meaning": docs.get(f.name, "")})
    return pd.DataFrame(rows).set_index("setting")


def _optional(kind):
    """``(inner type, allows None)`` of a type hint."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(kind))
    return kind, False


def _parser(kind, allows_none: bool):
    def parse(text: str):
        if allows_none and text.lower() == "none":
            return None
        return kind(text)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


def add_arguments(parser: argparse.ArgumentParser, cls, dest_prefix: str = "", skip=()) -> None:
    """Add ``--field-name`` for every field of ``cls`` (defaults suppressed: see :func:`given`)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, allows_none = _optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        doc = docs.get(f.name, "")
        # a docstring that states its own default (a None resolved later) keeps its words
        help_text = doc if "default" in doc else f"{doc} (default: {default!r})"
        name = "--" + f.name.replace("_", "-")
        dest = dest_prefix + f.name
        common = dict(dest=dest, default=argparse.SUPPRESS, help=help_text)
        if kind is bool:
            parser.add_argument(name, action=argparse.BooleanOptionalAction, **common)
        elif typing.get_origin(kind) is tuple:
            inner = typing.get_args(kind)[0]
            parser.add_argument(name, nargs="+", type=inner, metavar="N", **common)
        else:
            parser.add_argument(
                name, type=_parser(kind, allows_none), metavar=f.name.upper(), **common
            )


def given(args: argparse.Namespace, cls, dest_prefix: str = "") -> dict:
    """The fields of ``cls`` the user gave on the command line (defaults are not in ``args``)."""
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, dest_prefix + f.name):
            value = getattr(args, dest_prefix + f.name)
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return values
