"""pyproject.toml, environment.yml and constraints.txt describe the same environment.

- environment.yml (for conda users) lists the same pip requirements as pyproject.toml's
  dependencies plus its `dev` and `ray` extras (what `make venv` installs), with the same
  version ranges;
- constraints.txt (the exact versions installed and tested here) pins every one of them, each
  pin inside the pyproject range, torch and mujoco included.
"""

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
MIRRORED_EXTRAS = ("dev", "ray")  # extras that environment.yml installs too


def by_name(lines, source):
    found = {}
    for line in lines:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name not in found, f"{source} lists {req.name} twice"
        found[name] = req
    return found


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


@pytest.fixture(scope="module")
def pyproject_reqs(project):
    lines = list(project["dependencies"])
    for extra in MIRRORED_EXTRAS:
        lines += project["optional-dependencies"][extra]
    return by_name(lines, "pyproject.toml")


@pytest.fixture(scope="module")
def environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


@pytest.fixture(scope="module")
def env_pip(environment):
    pip = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs exactly one pip section"
    return pip[0]


@pytest.fixture(scope="module")
def pins():
    found = {}
    for number, raw in enumerate((ROOT / "constraints.txt").read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and not req.extras, (
            f"constraints.txt line {number}: {raw!r} is not an exact pin name==version"
        )
        name = canonicalize_name(req.name)
        assert name not in found, f"constraints.txt pins {req.name} twice"
        found[name] = Version(specs[0].version)
    return found


def test_pyproject_basics(project):
    assert project["name"] == "cqsm"
    assert project["requires-python"] == ">=3.11"
    assert project["scripts"]["cqsm"] == "cqsm.cli:main"


def test_every_optional_extra_is_used_by_the_library(project):
    """An extra (``pip install -e '.[name]'``) is a claim that the library can use it: each one
    but the developers' tools names a package that some module of ``cqsm`` imports."""
    sources = "\n".join(p.read_text() for p in (ROOT / "cqsm").rglob("*.py"))
    for extra, requirements in project["optional-dependencies"].items():
        if extra == "dev":
            continue
        for requirement in requirements:
            module = Requirement(requirement).name.replace("-", "_")
            assert re.search(rf"^\s*(import|from) {module}\b", sources, re.M), (extra, module)


def test_environment_yml_is_valid(environment):
    assert isinstance(environment, dict)
    assert environment.get("name") == "cqsm"
    channels = environment.get("channels")
    assert isinstance(channels, list) and channels and all(isinstance(c, str) for c in channels)
    deps = environment.get("dependencies")
    assert isinstance(deps, list) and deps
    conda = [d for d in deps if isinstance(d, str)]
    assert any(d.replace(" ", "") in ("python=3.11", "python=3.11.*") for d in conda), conda
    assert "pip" in conda, "environment.yml must install pip for its pip section"
    for item in deps:
        assert isinstance(item, str) or set(item) == {"pip"}, f"unexpected entry {item!r}"


def test_environment_installs_the_package(env_pip):
    assert "-e ." in env_pip, "environment.yml's pip section must install cqsm itself (-e .)"


def test_environment_matches_pyproject(env_pip, pyproject_reqs):
    env = by_name([line for line in env_pip if not line.startswith("-")], "environment.yml")
    only_env = sorted(set(env) - set(pyproject_reqs))
    only_py = sorted(set(pyproject_reqs) - set(env))
    assert not only_env, f"in environment.yml but not pyproject.toml: {only_env}"
    assert not only_py, f"in pyproject.toml but not environment.yml: {only_py}"
    for name, req in pyproject_reqs.items():
        other = env[name]
        assert (other.specifier, other.extras, other.marker) == (
            req.specifier,
            req.extras,
            req.marker,
        ), f"{name}: environment.yml has {other}, pyproject.toml has {req}"


def test_constraints_pin_torch_and_mujoco(pins):
    assert pins.get("torch") == Version("2.13.0"), "constraints.txt must pin torch==2.13.0"
    assert "mujoco" in pins, "constraints.txt must pin mujoco exactly"


def test_constraints_pin_every_requirement(pins, pyproject_reqs):
    unpinned = sorted(set(pyproject_reqs) - set(pins))
    assert not unpinned, f"constraints.txt does not pin {unpinned}"


def test_pins_satisfy_pyproject_ranges(pins, project):
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    bad = []
    for line in lines:
        req = Requirement(line)
        pin = pins.get(canonicalize_name(req.name))
        if pin is not None and not req.specifier.contains(pin, prereleases=True):
            bad.append(f"{req.name}=={pin} is outside {req}")
    assert not bad, "; ".join(bad)
