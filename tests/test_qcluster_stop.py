"""A real `manage.py qcluster` stops, and leaves no process behind, however it is told to.

SIGINT is Ctrl-C in a terminal; SIGTERM to the leader is what `docker stop` and systemd's
`KillMode=mixed` send; SIGTERM to the whole process group is what honcho and systemd's default
`KillMode=control-group` send (project/ops/management/commands/qcluster.py says why that one
used to hang). Each cluster runs on a throwaway SQLite file with the ORM broker.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STOP_WITHIN_S = 30
START_WITHIN_S = 60


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    """The environment of a cluster on a freshly migrated SQLite file, whatever the suite's."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path_factory.mktemp('qcluster') / 'engine.sqlite3'}"
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    env["Q_WORKERS"] = "2"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    return env


def _group_members(pgid: int) -> list[str]:
    """The live (not zombie) processes of process group ``pgid``, as "pid state" strings."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state != "Z":
            members.append(f"{stat.parent.name} {state}")
    return members


@pytest.mark.parametrize(
    "how",
    ["SIGINT to the leader", "SIGTERM to the leader", "SIGTERM to the process group"],
)
def test_qcluster_stops_within_bound_and_leaves_no_process(cluster_env, tmp_path, how):
    log = tmp_path / "qcluster.log"
    with log.open("wb") as out:
        leader = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=cluster_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_WITHIN_S
        while "running." not in log.read_text():
            assert leader.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert len(_group_members(leader.pid)) >= 4  # leader, sentinel, workers, monitor, pusher

        sig = signal.SIGINT if how.startswith("SIGINT") else signal.SIGTERM
        started = time.monotonic()
        if how.endswith("process group"):
            os.killpg(leader.pid, sig)
        else:
            leader.send_signal(sig)
        returncode = leader.wait(timeout=STOP_WITHIN_S)

        assert time.monotonic() - started < STOP_WITHIN_S
        assert returncode in (0, -sig), log.read_text()
        assert "has stopped." in log.read_text()
        deadline = time.monotonic() + 10
        while _group_members(leader.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _group_members(leader.pid) == []
    finally:
        if leader.poll() is None or _group_members(leader.pid):
            os.killpg(leader.pid, signal.SIGKILL)
            leader.wait()
