"""A throw-away PostgreSQL cluster for the test suite (and benchmarks).

Uses the server binaries on the machine (``initdb``/``pg_ctl`` on PATH or under
``/usr/lib/postgresql/*/bin``). initdb refuses to run as root, so as root the cluster runs
as the unprivileged ``postgres`` user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def find_bin(name: str) -> str | None:
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A throw-away cluster that can be stopped and started again (same port, same data)."""

    data: Path
    workdir: Path
    port: int
    prefix: list[str]
    pg_ctl: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        """A SQLAlchemy URL for the ``postgres`` database of this cluster."""
        return f"postgresql+psycopg://summitwatch@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.workdir} -c fsync=off -c full_page_writes=off"
        subprocess.run(
            [
                *self.prefix,
                self.pg_ctl,
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.workdir / "log"),
                "-w",
                "start",
            ],
            check=True,
            capture_output=True,
            env=self.env,
        )
        _wait(self.port)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` disconnects every client and aborts their transactions."""
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"],
            capture_output=True,
            env=self.env,
        )


@contextmanager
def running_cluster() -> Iterator[Cluster]:
    """Create and start a cluster on a free loopback port; yields it; removes it after."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="summitwatch-pg-"))
    if as_root:
        user = pwd.getpwnam("postgres")
        os.chown(workdir, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    cluster = Cluster(workdir / "data", workdir, _free_port(), prefix, pg_ctl, env)
    subprocess.run(
        [
            *prefix,
            initdb,
            "-D",
            str(cluster.data),
            "-U",
            "summitwatch",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def temporary_cluster() -> Iterator[str]:
    """Start a cluster on a free loopback port; yields a SQLAlchemy URL; removes it after."""
    with running_cluster() as cluster:
        yield cluster.url


def _wait(port: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL did not start on port {port}")
