"""The house plotting style and figure saving: one place for every figure of the book and paper.

``set_style()`` applies the seaborn style; ``color(method)`` gives each method the same colour in
every figure (the colour-blind-safe Okabe–Ito palette); ``save(fig, name, data)`` writes
``name.pdf`` (paper), ``name.png`` (web) and ``name.csv`` (the tidy data behind the figure) into
the figure directory: ``$CQSM_FIGURE_DIR`` if set (the figure pipeline sets it per profile), else
``paper_figures/figures/interactive`` in the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from cqsm.atomic import atomic_write
from cqsm.pipeline.page import count
from cqsm.rl.results import repository_root

__all__ = [
    "set_style",
    "color",
    "palette",
    "categorical",
    "figure_dir",
    "save",
    "exact_line",
    "learning_curves",
    "interval_lines",
    "dashes",
    "VARIANT_DASHES",
    "bars_by_env",
]

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
_OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "grey": "#999999",
}

#: One colour per method, everywhere (book and paper).
METHOD_COLORS = {
    "exact": _OKABE_ITO["black"],
    "martingale loss": _OKABE_ITO["blue"],
    "TD(0)": _OKABE_ITO["orange"],
    "TD(lambda)": _OKABE_ITO["bluish green"],
    "LSTD": _OKABE_ITO["reddish purple"],
    "mean squared TD error": _OKABE_ITO["vermillion"],
    "policy iteration": _OKABE_ITO["black"],
    "offline CQSM": _OKABE_ITO["blue"],
    "online CQSM": _OKABE_ITO["orange"],
    "true Q": _OKABE_ITO["blue"],
    "wrong Q": _OKABE_ITO["vermillion"],
    "augmented Q(x, a)": _OKABE_ITO["blue"],
    "conventional Q(x, u)": _OKABE_ITO["vermillion"],
    "CQSM": _OKABE_ITO["blue"],
    "CQSM reference": _OKABE_ITO["grey"],
    "CQSM, Q-score matching": _OKABE_ITO["blue"],
    "CQSM, Feynman-Kac": _OKABE_ITO["vermillion"],
    "TD3": _OKABE_ITO["orange"],
    "CQSM (discrete optimum)": _OKABE_ITO["black"],
    "Q-learning, γ = 0.99 per step": _OKABE_ITO["vermillion"],
    "Q-learning, γ = e^(−βΔt)": _OKABE_ITO["bluish green"],
    "SAC": _OKABE_ITO["bluish green"],
    "Diffusion-QL": _OKABE_ITO["reddish purple"],
    "QSM": _OKABE_ITO["sky blue"],
}
_EXTRA = [_OKABE_ITO[k] for k in ("sky blue", "yellow", "grey", "vermillion", "bluish green")]


def set_style() -> None:
    """Apply the house style (call once per notebook; harmless to repeat)."""
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
    matplotlib.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 110,
            "savefig.dpi": 200,
            "savefig.bbox": "tight",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.frameon": False,
            "pdf.fonttype": 42,
            "lines.linewidth": 1.8,
        }
    )


#: Variants of a method, drawn in the method's colour with dashes of their own: the suffix of
#: the variant's name after the method's, and the line style ("TD3, time-aware" is TD3's
#: orange, dashed).
VARIANT_DASHES = {", time-aware": "--", ", an update per step": "-."}


def _variant(method: str) -> tuple[str, str]:
    """``(method whose colour it takes, line style)`` of ``method``."""
    for suffix, style in VARIANT_DASHES.items():
        base = method.removesuffix(suffix)
        if base != method and base in METHOD_COLORS:
            return base, style
    return method, "-"


def color(method: str) -> str:
    """The colour of ``method``: its own in :data:`METHOD_COLORS`, a variant's method's
    (:data:`VARIANT_DASHES`), else a stable fallback."""
    method = _variant(method)[0]
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA[sum(map(ord, method)) % len(_EXTRA)]


def dashes(method: str) -> str:
    """The line style of ``method``: solid, or its variant's (:data:`VARIANT_DASHES`)."""
    return _variant(method)[1]


def palette(methods) -> dict[str, str]:
    """A seaborn ``palette=`` mapping for ``methods``."""
    return {m: color(m) for m in methods}


def exact_line(ax, value: float, label: str | None = None, **kwargs) -> None:
    """A dashed black reference line at an exact (closed-form) value."""
    ax.axhline(value, color=color("exact"), ls="--", lw=1.0, label=label, **kwargs)


def figure_dir() -> Path:
    """Where :func:`save` writes: ``$CQSM_FIGURE_DIR`` or ``paper_figures/figures/interactive``."""
    env = os.environ.get("CQSM_FIGURE_DIR")
    if env:
        return Path(env)
    root = repository_root() or Path.cwd()
    return root / "paper_figures" / "figures" / "interactive"


_METADATA = {"pdf": {"CreationDate": None, "ModDate": None}, "png": {"Software": None}}


def save(fig: plt.Figure, name: str, data: pd.DataFrame) -> Path:
    """Write ``name.pdf``, ``name.png`` and ``name.csv`` (the tidy data drawn) atomically.

    Returns the directory. The figure stays open so that the notebook displays it.
    """
    if not isinstance(data, pd.DataFrame) or data.empty:
        raise ValueError(f"save({name!r}) needs the tidy data behind the figure as a DataFrame.")
    out = figure_dir()
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("pdf", "png"):
        atomic_write(
            out / f"{name}.{ext}",
            lambda p, ext=ext: fig.savefig(p, format=ext, metadata=_METADATA[ext]),
        )
    atomic_write(out / f"{name}.csv", lambda p: data.to_csv(p, index=False))
    return out


def categorical(names) -> dict[str, str]:
    """Distinct colours, in order, for names that are not methods (for example a study's arms)."""
    colours = list(_OKABE_ITO.values())
    return {name: colours[i % len(colours)] for i, name in enumerate(names)}


def learning_curves(
    ax,
    rows: pd.DataFrame,
    y: str = "eval_return",
    hue: str = "algo",
    colors=None,
    x: str = "step",
) -> None:
    """Mean over seeds of ``y`` against ``x`` (``step``, or ``sim_time``: simulated seconds),
    one line per ``hue``, a band of one std.

    ``rows`` are tidy training rows (:mod:`cqsm.rl.results`); adding an algorithm's rows adds its
    curve. The band is the spread across seeds, not a confidence interval. Colours are the
    methods' own unless ``colors`` maps the ``hue`` values (see :func:`categorical`).
    """
    for name, group in rows.groupby(hue, sort=False):
        stats = group.groupby(x)[y].agg(["mean", "std", "count"]).reset_index()
        seeds = stats["count"].max()
        label = f"{name} ({count(seeds, 'seed')})"
        shade = colors[name] if colors is not None else color(str(name))
        ax.plot(stats[x], stats["mean"], color=shade, ls=dashes(str(name)), label=label)
        ax.fill_between(
            stats[x],
            stats["mean"] - stats["std"].fillna(0),
            stats["mean"] + stats["std"].fillna(0),
            color=shade,
            alpha=0.2,
            lw=0,
        )
    if rows.empty:
        ax.text(0.5, 0.5, "no runs yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("environment steps" if x == "step" else "simulated seconds")


def interval_lines(
    ax,
    table: pd.DataFrame,
    y: str = "mean",
    low: str = "ci_low",
    high: str = "ci_high",
    native=(),
) -> None:
    """``y`` against the control interval ``dt`` (log axis), one line per ``method`` of
    ``table`` (one row per method and interval) with a band from ``low`` to ``high``; the env's
    own interval (the intervals in ``native``, and those of the rows marked in a ``native``
    column where ``table`` has one) is a dotted vertical line."""
    for name, group in table.groupby("method", sort=False):
        group = group.sort_values("dt")
        shade = color(str(name))
        style = dashes(str(name))
        ax.plot(group["dt"], group[y], marker="o", color=shade, ls=style, label=name)
        ax.fill_between(group["dt"], group[low], group[high], color=shade, alpha=0.2, lw=0)
    marks = set(native)
    if "native" in table:
        marks |= set(table.loc[table["native"], "dt"])
    for dt in sorted(marks):
        ax.axvline(dt, color="0.5", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(r"control interval $\Delta t$ (s)")


def bars_by_env(ax, table: pd.DataFrame, y: str, low: str, high: str, label=str) -> None:
    """Bars of ``y`` per algorithm (colour) and env (plain, then hatched), whiskers from ``low``
    to ``high``, for a table with columns ``algo`` and ``env`` (e.g. ``cqsm bench``'s summary).
    ``label`` maps an algorithm name to its display name (and colour)."""
    algos, envs = list(dict.fromkeys(table["algo"])), list(dict.fromkeys(table["env"]))
    width = 0.8 / len(envs)
    for k, env in enumerate(envs):
        d = table[table["env"] == env].set_index("algo").reindex(algos)
        x = np.arange(len(algos)) + (k - (len(envs) - 1) / 2) * width
        ax.bar(
            x,
            d[y],
            width=0.95 * width,
            yerr=[d[y] - d[low], d[high] - d[y]],
            color=[color(label(a)) for a in algos],
            hatch=HATCHES[k % len(HATCHES)],
            edgecolor="black",
            lw=0.5,
            error_kw={"lw": 0.8},
        )
    ax.set_xticks(range(len(algos)), [label(a) for a in algos])
    handles = [
        plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", hatch=HATCHES[k])
        for k in range(len(envs))
    ]
    ax.legend(handles, envs, fontsize=8)


HATCHES = ("", "///", "...", "xx")


def filmstrip(ax, shapes, times, spacing: float, slots: int | None = None) -> None:
    """Draw frames side by side: each frame a list of polylines ``(xs, ys)``, shifted by
    ``spacing`` per frame and labelled with its time in seconds. ``slots`` fixes the width (in
    frames), so strips with fewer frames keep the same scale."""
    for i, (frame, t) in enumerate(zip(shapes, times, strict=True)):
        for xs, ys in frame:
            ax.plot(
                np.asarray(xs) + i * spacing,
                ys,
                color=color("CQSM"),
                lw=2.5,
                solid_capstyle="round",
            )
        ax.text(i * spacing, -1.25, f"{t:.1f} s", ha="center", va="top", fontsize=8)
    width = (slots or len(shapes)) - 1
    ax.set_xlim(-0.5 * spacing, (width + 0.5) * spacing)
    ax.set_ylim(-1.6, 1.15)
    ax.set_aspect("equal")
    ax.axis("off")


def pendulum_shape(obs) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pendulum-v1's rod (unit length, angle 0 upright) from its observation (cos, sin, rate)."""
    cos, sin = float(obs[0]), float(obs[1])
    return [(np.array([0.0, sin]), np.array([0.0, cos]))]


def cart_pole_shape(obs) -> list[tuple[np.ndarray, np.ndarray]]:
    """InvertedPendulum-v5's cart (a bar) and pole (0.6 m) from its observation (x, angle, ...)."""
    x, angle = float(obs[0]), float(obs[1])
    cart = (np.array([x - 0.2, x + 0.2]), np.array([0.0, 0.0]))
    pole = (np.array([x, x + 0.6 * np.sin(angle)]), np.array([0.0, 0.6 * np.cos(angle)]))
    return [cart, pole]


SHAPES = {"Pendulum-v1": pendulum_shape, "InvertedPendulum-v5": cart_pole_shape}
