"""The package's layers: every import, those inside functions included, points down or sideways
within a layer, and no module imports itself back through others (no cycles).

    utilities (cqsm.atomic, cqsm.settings)  <  cqsm.lq  <  cqsm.rl  <  cqsm.pipeline  <  cqsm.cli
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cqsm"
RANKS = {"utilities": 0, "cqsm.lq": 1, "cqsm.rl": 2, "cqsm.pipeline": 3, "top": 4}
UTILITIES = {"cqsm.atomic", "cqsm.settings"}
TOP = {"cqsm", "cqsm.cli", "cqsm.__main__"}
# Third-party packages a layer must not reach for: the exact core knows nothing of environments.
FORBIDDEN = {"cqsm.lq": {"gymnasium", "mujoco"}, "utilities": {"gymnasium", "mujoco", "torch"}}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    if module in UTILITIES:
        return "utilities"
    if module in TOP:
        return "top"
    for prefix in ("cqsm.lq", "cqsm.rl", "cqsm.pipeline"):
        if module == prefix or module.startswith(prefix + "."):
            return prefix
    raise AssertionError(f"{module} belongs to no layer: place it in one, or list it here")


def imports(module: str) -> tuple[set[str], set[str]]:
    """The cqsm modules and the top-level third-party packages that ``module`` imports,
    anywhere in its body."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    own, other = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule where there is one
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for name in names:
            if name == "cqsm" or name.startswith("cqsm."):
                while name not in MODULES:  # `import cqsm.rl.envs.interval` etc.
                    name = name.rpartition(".")[0]
                if name != module:
                    own.add(name)
            else:
                other.add(name.partition(".")[0])
    return own, other


GRAPH = {module: imports(module)[0] for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    own, other = imports(module)
    upward = [m for m in own if RANKS[layer(m)] > RANKS[layer(module)] and m != "cqsm"]
    assert not upward, f"{module} ({layer(module)}) imports the layer above: {sorted(upward)}"
    forbidden = other & FORBIDDEN.get(layer(module), set())
    assert not forbidden, f"{module} imports {sorted(forbidden)}"


def test_no_import_cycles():
    state: dict[str, str] = {}
    cycles = []

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_graph_is_read():
    """The walk sees imports inside functions and resolves `from package import module`."""
    assert "cqsm.lq.sde" in GRAPH["cqsm.lq.problem"]
    assert "cqsm.rl.train" in GRAPH["cqsm.rl.runs"]
    assert {"cqsm.pipeline.book", "cqsm.rl.train"} <= GRAPH["cqsm.cli"]
    assert layer("cqsm.rl.envs.interval") == "cqsm.rl" and layer("cqsm.settings") == "utilities"


def test_readme_lists_every_module():
    """README's table of the library names each public module once, and only modules that
    exist (a subpackage's modules may be named in its row)."""
    readme = (PACKAGE.parent / "README.md").read_text()
    table = readme[readme.index("## The library") : readme.index("## Tests")]
    rows = [
        line.split("|")[1].strip(" `*") for line in table.splitlines() if line.startswith("| `")
    ]
    named = set(rows) | set(re.findall(r"`(cqsm\.[\w.]+)`", table))
    public = {m for m in MODULES if not m.rpartition(".")[2].startswith("_")} - {"cqsm"}
    listed = {m for m in public if m in named or any(m.startswith(r + ".") for r in rows)}
    assert public - listed == set(), f"modules missing from README's table: {public - listed}"
    ghosts = {r for r in rows if r.startswith("cqsm") and r not in MODULES}
    assert not ghosts, f"README's table names modules that do not exist: {ghosts}"
