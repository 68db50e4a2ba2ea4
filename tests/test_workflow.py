"""The Pages workflow builds the book with the README's own commands and publishes what
`make book` writes."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def readme_commands() -> set[str]:
    """The commands in the README's shell blocks, comments dropped."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    lines = (line.split("#")[0].strip() for block in blocks for line in block.splitlines())
    return {line for line in lines if line}


def test_the_workflow_parses_and_runs_on_pushes_to_main():
    flow = yaml.safe_load(WORKFLOW.read_text())
    triggers = flow[True] if True in flow else flow["on"]  # YAML 1.1 reads `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert {"build", "deploy"} <= set(flow["jobs"])
    assert flow["permissions"]["pages"] == "write" and flow["permissions"]["id-token"] == "write"


def test_the_workflow_builds_with_the_readme_commands_and_deploys_the_book():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    steps = jobs["build"]["steps"]
    runs = [line.strip() for s in steps if "run" in s for line in s["run"].splitlines()]
    assert runs and set(runs) <= readme_commands(), (runs, readme_commands())
    uses = {s["uses"].split("@")[0]: s for s in steps if "uses" in s}
    assert uses["actions/upload-pages-artifact"]["with"]["path"].rstrip("/") == "_build/html/book"
    assert "_build/html/book/index.html" in (ROOT / "README.md").read_text()
    deploy = [s["uses"].split("@")[0] for s in jobs["deploy"]["steps"]]
    assert deploy == ["actions/deploy-pages"] and jobs["deploy"]["needs"] == "build"


def test_the_readme_commands_are_read():
    assert {"make book", "make test"} <= readme_commands()
