"""Shared pytest set-up: the markers and the --runslow switch.

- ``slow``: tests that take more than a few seconds; skipped unless ``--runslow`` is given
  (``make test`` gives it).
- ``built_outputs``: checks of the figures and the HTML book that ``make test`` builds before it
  runs them (``pytest -m built_outputs``); see tests/test_pipeline.py.
"""

import pytest
import torch

# One thread per process: reproducible and fast on small machines (and two processes side by side).
torch.set_num_threads(1)


def pytest_addoption(parser):
    parser.addoption(
        "--runslow", action="store_true", default=False, help="also run the tests marked slow"
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (run with --runslow)")
    config.addinivalue_line(
        "markers", "built_outputs: checks the figures and book built by `make test`"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (make test does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
