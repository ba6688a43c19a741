"""Fixtures of the integration tier: a real PostgreSQL server on loopback for the DuckLake catalog."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """Debian's PostgreSQL, initdb'd into a temp folder and started on 127.0.0.1 for the session.

    Password authentication (scram) for user ``r1``: clients get the password from PGPASSWORD,
    as a deployment would. Stopped at the end, failures included.
    """
    pg_ctls = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not pg_ctls:
        pytest.skip("Debian postgresql is not installed (.ci/install-test-deps.sh installs it)")
    bindir = pg_ctls[-1].parent
    root = Path(tempfile.mkdtemp(prefix="r1-pg-"))
    password = secrets.token_hex(16)
    (root / "pwfile").write_text(password)
    as_user: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        for path in (root, root / "pwfile"):
            shutil.chown(path, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()

    def pg(*args: str) -> None:
        proc = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")

    pg(str(bindir / "initdb"), "-D", str(data), "-U", "r1", "--auth=scram-sha-256", f"--pwfile={root / 'pwfile'}")
    pg(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
       "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=50", "start")
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "r1", "password": password, "bindir": bindir}
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_catalog(postgres_server, monkeypatch) -> str:
    """A fresh database on the session's server, as a ``storage.catalog`` value; sets PGPASSWORD."""
    name = f"r1_{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "PGPASSWORD": postgres_server["password"]}
    subprocess.run([str(postgres_server["bindir"] / "createdb"), "-h", "127.0.0.1", "-p", str(postgres_server["port"]),
                    "-U", "r1", name], env=env, check=True, capture_output=True, timeout=60)
    monkeypatch.setenv("PGPASSWORD", postgres_server["password"])
    return f"postgres:dbname={name} host=127.0.0.1 port={postgres_server['port']} user=r1"
