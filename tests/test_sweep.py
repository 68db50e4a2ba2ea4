"""Sweeps: `cqsm sweep` on local worker processes and on a real Ray cluster of this machine.

The Ray cluster is started by the tests themselves (`ray start --head --block` on the loopback
address, its files in a temporary folder) and stopped by killing the process group it runs in.
The same two tiny runs go through both backends and must give the same rows, bar the timing
columns; one Ray task kills its own worker process after its first checkpoint and must be retried
and resume from it.
"""

import contextlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_train import rows_without_timing, tiny

from cqsm import cli
from cqsm.rl import sweep as sweep_module
from cqsm.rl.sweep import SweepError, summary_table, sweep, sweep_runs

ROOT = Path(__file__).resolve().parents[1]
# One pytest-xdist worker runs this file (make test: --dist loadgroup): one Ray cluster at a time.
pytestmark = pytest.mark.xdist_group("sweep")
RAY = Path(sys.executable).with_name("ray")
STEPS = dict(total_steps=400, eval_every=200, checkpoint_every=200)
SEEDS = (0, 1)
KILLED = 1  # the seed whose Ray task kills its own worker process once
# `cqsm sweep` options making the runs that tiny(out, **STEPS, seed=s) makes.
CLI_RUNS = (
    "--algos cqsm --envs Pendulum-v1 --seeds 0 1 --total-steps 400 --learning-starts 150 "
    "--eval-every 200 --n-eval 2 --checkpoint-every 200 --batch-size 32 --hidden 32 32"
).split()


def runs(out) -> list:
    return [tiny(out, seed=seed, **STEPS) for seed in SEEDS]


def free_port() -> int:
    """A free TCP port on the loopback address, outside Ray's worker ports (10002-19999)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not 10_000 <= port < 20_000:
            return port


class KillOnce:
    """An ``on_eval`` that kills its own worker process (SIGKILL: what a lost node or the OOM
    killer does) the first time run ``seed`` is evaluated after its first checkpoint exists;
    the marker file records the kill. ``train`` seeds torch with the run's seed, which is how
    the hook tells the runs apart."""

    def __init__(self, seed: int, run_dir: Path, marker: Path):
        self.seed, self.run_dir, self.marker = seed, Path(run_dir), Path(marker)

    def __call__(self, agent, eval_env) -> dict:
        if (
            torch.initial_seed() == self.seed
            and (self.run_dir / "checkpoint.pt").exists()
            and not self.marker.exists()
        ):
            self.marker.write_text(f"killed pid {os.getpid()}\n")
            os.kill(os.getpid(), signal.SIGKILL)
        return {}  # no extra columns: the rows stay those of a run without the hook


@pytest.fixture(scope="module")
def local_cli(tmp_path_factory):
    """`cqsm sweep` of the two tiny runs on two local worker processes, end to end."""
    out = tmp_path_factory.mktemp("local")
    argv = ["sweep", *CLI_RUNS, "--workers", "2", "--out", str(out)]
    code, printed = run_cli(argv)
    return out, code, printed


def run_cli(argv):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = cli.main(argv)
        except SystemExit as exit:  # argparse's errors
            code = exit.code
    return code, stdout.getvalue() + stderr.getvalue()


@pytest.fixture(scope="module")
def ray_cluster():
    """A one-node Ray cluster with two CPUs on 127.0.0.1; yields its address. Ray's token
    authentication is off for it and for this process (a token left in ~/.ray by other use of
    Ray would turn it on for the cluster alone)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    temp = Path(tempfile.mkdtemp(prefix="cqsm-ray-", dir="/tmp"))  # short: Ray's socket paths
    port = free_port()
    command = [
        str(RAY), "start", "--head", "--block", "--node-ip-address", "127.0.0.1",
        "--port", str(port), "--num-cpus", "2", "--include-dashboard", "false",
        "--dashboard-agent-listen-port", str(free_port()),
        "--temp-dir", str(temp), "--disable-usage-stats",
    ]  # fmt: skip
    log = (temp / "ray-start.log").open("w")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"ray start exited: {(temp / 'ray-start.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the Ray head node did not start within 90 s")
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):  # the process group of `ray start` alone
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)
        patch.undo()


@pytest.fixture(scope="module")
def ray_sweep(ray_cluster, tmp_path_factory):
    """The same two runs as Ray tasks; the task of seed KILLED dies after its first checkpoint."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # KillOnce reaches workers
    out = tmp_path_factory.mktemp("ray")
    marker = out / "killed.txt"
    settings = runs(out)
    hook = KillOnce(KILLED, settings[KILLED].run_dir, marker)
    began = time.perf_counter()
    outcomes = sweep_runs(settings, on_eval=hook, backend="ray", address=ray_cluster)
    seconds = time.perf_counter() - began
    print(f"a tiny Ray sweep of two runs, one killed and retried: {seconds:.1f} s")
    return settings, outcomes, marker


def test_cli_sweep_on_local_workers_prints_every_run_and_a_summary(local_cli):
    out, code, printed = local_cli
    assert code == 0, printed
    for seed in SEEDS:
        assert f"cqsm-Pendulum-v1-s{seed}: trained to step 400, eval return" in printed
    table = [re.split(r"\s{2,}", line.strip()) for line in printed.splitlines()[-4:]]
    assert table[0] == ["run", "status", "final step", "final eval return", "seconds"]
    assert [row[:3] for row in table[2:]] == [
        [f"cqsm-Pendulum-v1-s{seed}", "trained", "400"] for seed in SEEDS
    ]
    for seed in SEEDS:
        rows = pd.read_csv(out / f"cqsm-Pendulum-v1-s{seed}" / "results.csv")
        assert list(rows["step"]) == [200, 400]
    again, printed = run_cli(["sweep", *CLI_RUNS, "--out", str(out)])  # everything done
    assert again == 0 and "2 of 2 runs done; 0 to run" in printed
    assert printed.count("done already") == 2


def test_ray_rows_equal_the_local_backends(local_cli, ray_sweep):
    local_out, code, _ = local_cli
    assert code == 0
    settings, outcomes, _ = ray_sweep
    local = sweep(runs(local_out), backend="local")  # every run done: only reads the rows
    remote = pd.concat([o.rows for o in outcomes], ignore_index=True)
    assert list(remote.columns) == list(local.columns)
    pd.testing.assert_frame_equal(rows_without_timing(remote), rows_without_timing(local))
    assert list(remote["step"]) == [200, 400, 200, 400]
    assert [o.status for o in outcomes] == ["trained", "resumed"]
    again = sweep_runs(settings, backend="ray", address="127.0.0.1:1")  # done: Ray not needed
    assert [o.status for o in again] == ["skipped", "skipped"]


def test_a_killed_ray_task_is_retried_and_resumes_from_its_checkpoint(ray_sweep):
    settings, outcomes, marker = ray_sweep
    assert marker.read_text().startswith("killed pid")  # the first attempt did die
    killed = outcomes[KILLED]
    assert killed.status == "resumed" and killed.retried
    assert killed.start_step == 200  # the checkpoint written after the first 200 steps
    assert killed.label == "resumed from step 200 (retried)"
    assert killed.final_step == 400
    assert "resumed from step 200 (retried)" in summary_table(outcomes)
    assert outcomes[1 - KILLED].start_step == 0


@pytest.mark.parametrize(
    "extra, code, message",
    [
        (["--backend", "ray", "--address", "UNREACHABLE"], 1, "Cannot reach a Ray cluster at"),
        (["--backend", "ray", "--out", "runs"], 1, "needs an absolute out folder"),
        (["--algos", "cqsm", "nope"], 1, "Unknown algorithm 'nope'"),
        (["--address", "127.0.0.1:6379"], 1, "but the backend is local"),
        (["--backend", "spark"], 2, "invalid choice: 'spark'"),
        (["--envs", "NoSuchEnv-v0"], 1, "NoSuchEnv-v0"),
    ],
)
def test_bad_input_gets_a_one_line_error(tmp_path, extra, code, message):
    extra = [f"127.0.0.1:{free_port()}" if e == "UNREACHABLE" else e for e in extra]
    argv = ["sweep", "--total-steps", "10", "--out", str(tmp_path), *extra]
    began = time.monotonic()
    got, printed = run_cli(argv)
    assert time.monotonic() - began < 30  # an unreachable cluster fails fast, never hangs
    assert got == code, printed
    errors = [line for line in printed.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], printed
    assert not any(tmp_path.iterdir())  # nothing was trained


def test_the_backend_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CQSM_SWEEP_BACKEND", "ray")
    with pytest.raises(SweepError, match="absolute out folder"):
        sweep([tiny("relative/runs")])
    monkeypatch.setenv("CQSM_SWEEP_BACKEND", "spark")
    with pytest.raises(SweepError, match="CQSM_SWEEP_BACKEND"):
        sweep([tiny(tmp_path)])


def test_a_missing_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(SweepError, match=r"pip install .*\[ray\]"):
        sweep([tiny(tmp_path)], backend="ray")


def test_make_passes_the_backend_to_the_chapters():
    command = ["make", "-n", "figures", "PROFILE=paper", "BACKEND=ray", "RAY_ADDRESS=auto"]
    dry = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    expected = "CQSM_SWEEP_BACKEND=ray CQSM_RAY_ADDRESS=auto .venv/bin/cqsm figures --profile paper"
    assert expected in dry, dry
    assert sweep_module.BACKEND_ENV == "CQSM_SWEEP_BACKEND"
    assert sweep_module.ADDRESS_ENV == "CQSM_RAY_ADDRESS"
