"""A throwaway local PostgreSQL server in a folder: for the multi-worker tests, the worker
benchmark, and for trying a shared study on one machine before setting up a real server.

Why its own module: the tests and `benchmarks/bench_workers.py` need the same start/stop/
restart logic, and a clear reason when it cannot run (binaries missing, root without a
`postgres` user). It uses Debian's server binaries (`postgresql` package); `initdb` refuses to
run as root, so as root the server runs as the `postgres` user (`runuser`).

    with LocalPostgres.start(folder) as pg:
        url = pg.create_database("study")   # postgresql://postgres@127.0.0.1:PORT/study
"""

from __future__ import annotations

import glob
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from codesign.errors import ToolMissingError

log = logging.getLogger(__name__)


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl, else pg_ctl on PATH."""
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                   if Path(p).parent.name.isdigit() else 0)
    for d in reversed(cands):
        if (Path(d) / "initdb").is_file() and (Path(d) / "pg_ctl").is_file():
            return Path(d)
    exe = shutil.which("pg_ctl")
    return Path(exe).parent if exe and (Path(exe).parent / "initdb").is_file() else None


def unavailable_reason() -> str | None:
    """Why a local server cannot be started here (None: it can)."""
    if find_bindir() is None:
        return "PostgreSQL server binaries not found (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start the server as 'postgres'"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install 'psycopg[binary]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """A server on 127.0.0.1:port with its data, socket and log in one folder (trust auth,
    superuser `postgres`); `stop()` removes nothing, `cleanup()` removes the folder."""

    def __init__(self, folder: Path, port: int, bindir: Path, as_postgres: bool):
        self.folder = Path(folder)
        self.data = self.folder / "data"
        self.port = port
        self.bindir = bindir
        self.as_postgres = as_postgres
        self.log = self.folder / "server.log"

    # -- lifecycle -------------------------------------------------------------------
    @classmethod
    def start(cls, folder: str | Path | None = None, port: int | None = None,
              stat_statements: bool = True) -> "LocalPostgres":
        reason = unavailable_reason()
        if reason:
            raise ToolMissingError(f"cannot start a local PostgreSQL server: {reason}")
        folder = Path(folder or tempfile.mkdtemp(prefix="codesign-pg-"))
        folder.mkdir(parents=True, exist_ok=True)
        as_pg = os.geteuid() == 0
        if as_pg:  # the server user must own its folder (and reach it)
            pw = pwd.getpwnam("postgres")
            os.chown(folder, pw.pw_uid, pw.pw_gid)
            os.chmod(folder, 0o700)
            for parent in list(folder.resolve().parents)[:-1]:
                if not os.stat(parent).st_mode & 0o001:
                    raise ToolMissingError(f"cannot start a local PostgreSQL server in {folder}: the 'postgres' user "
                                           f"cannot enter {parent}; use a folder under /tmp")
        pg = cls(folder, port or free_port(), find_bindir(), as_pg)  # type: ignore[arg-type]
        pg._run("initdb", "-D", str(pg.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        if stat_statements:
            with open(pg.data / "postgresql.conf", "a") as f:
                f.write("\nshared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = all\n")
        pg.resume()
        return pg

    def _cmd(self, tool: str, *args: str) -> list[str]:
        cmd = [str(self.bindir / tool), *args]
        return ["runuser", "-u", "postgres", "--", *cmd] if self.as_postgres else cmd

    def _run(self, tool: str, *args: str, timeout: float = 120) -> None:
        r = subprocess.run(self._cmd(tool, *args), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            raise ToolMissingError(f"PostgreSQL {tool} failed ({r.returncode}): {' | '.join(tail)}; log {self.log}")

    def _options(self) -> str:
        return f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"

    def resume(self) -> None:
        """Start the server (again) on the same port and data folder; waits until it accepts."""
        self._run("pg_ctl", "-D", str(self.data), "-o", self._options(), "-l", str(self.log), "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (mode fast: open connections are cut, as in a crash or a restart)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        if down_s:
            time.sleep(down_s)
        self.resume()

    def cleanup(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- databases -------------------------------------------------------------------
    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                             autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}"')
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def query(self, db: str, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=db, autocommit=True) as c:
            cur = c.execute(sql)
            return cur.fetchall() if cur.description else []

    def statements(self, db: str) -> int | None:
        """Statements executed in database `db` so far (pg_stat_statements), None if absent."""
        try:
            self.query(db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            rows = self.query(db, "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d "
                                  f"ON d.oid = s.dbid WHERE d.datname = '{db}'")
            return int(rows[0][0])
        except Exception as exc:  # noqa: BLE001 - the extension is optional
            log.debug("pg_stat_statements unavailable: %s", exc)
            return None

    def commits(self, db: str) -> int:
        """Committed transactions in database `db` (pg_stat_database.xact_commit)."""
        rows = self.query("postgres", f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'")
        return int(rows[0][0]) if rows else 0
