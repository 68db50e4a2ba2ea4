"""The house plots: lines against the control interval mark the env's own interval."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from cqsm.pipeline.plots import color, dashes, interval_lines, set_style  # noqa: E402


def test_interval_lines_draw_a_line_per_method_and_mark_the_native_interval():
    set_style()
    table = pd.DataFrame(
        {
            "method": ["TD3", "TD3", "SAC", "SAC"],
            "dt": [0.05, 0.01, 0.01, 0.05],
            "mean": [4.0, 2.0, 1.0, 3.0],
            "ci_low": [3.0, 1.0, 0.5, 2.0],
            "ci_high": [5.0, 3.0, 1.5, 4.0],
        }
    )
    fig, ax = plt.subplots()
    interval_lines(ax, table, native=[0.05])
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["TD3"].get_xdata().tolist() == [0.01, 0.05]  # sorted by interval
    assert lines["TD3"].get_color() == color("TD3")
    marks = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert [m.get_xdata()[0] for m in marks] == [0.05] and ax.get_xscale() == "log"
    fig2, ax2 = plt.subplots()
    interval_lines(ax2, table.assign(native=table["dt"] == 0.01), native=[0.05])
    marks = [line.get_xdata()[0] for line in ax2.get_lines() if line.get_linestyle() == ":"]
    assert marks == [0.01, 0.05]
    plt.close("all")


def test_a_variant_takes_its_methods_colour_and_dashes_of_its_own():
    assert color("TD3, time-aware") == color("TD3") and dashes("TD3, time-aware") == "--"
    assert color("SAC, time-aware") == color("SAC") != color("TD3")
    assert color("CQSM, an update per step") == color("CQSM")
    assert dashes("CQSM, an update per step") == "-." and dashes("CQSM") == "-"
    assert dashes("CQSM, span T") == "-"  # not a variant: a method of its own
    assert dashes("a name, time-aware") == "-"  # a suffix on no known method
    fig, ax = plt.subplots()
    table = pd.DataFrame(
        {
            "method": ["TD3", "TD3", "TD3, time-aware", "TD3, time-aware"],
            "dt": [0.01, 0.05, 0.01, 0.05],
            "mean": [1.0, 2.0, 3.0, 2.0],
            "ci_low": [0.5, 1.5, 2.5, 1.5],
            "ci_high": [1.5, 2.5, 3.5, 2.5],
        }
    )
    interval_lines(ax, table)
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert lines["TD3, time-aware"].get_linestyle() == "--"
    assert lines["TD3"].get_linestyle() == "-"
    plt.close("all")
