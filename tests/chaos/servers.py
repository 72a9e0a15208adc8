"""Private PostgreSQL and Redis servers that the chaos tests start, break and mend.

Each server listens on a free loopback port and keeps its files (and log) in a temporary folder
of its own, so restarting, crashing, freezing or skewing it touches no other test and no
developer's data. PostgreSQL refuses to run as root: when the tests run as root the cluster is
owned by, and run as, the ``postgres`` OS user (through ``runuser``).

PostgreSQL's clock can be skewed with libfaketime, leaving its monotonic clock alone (so
timeouts and the server's own timers behave; only the wall clock it reports is off). Redis's
cannot (see :meth:`RedisServer.start`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import redis

FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def faketime_env(offset_seconds: float) -> dict[str, str]:
    """Environment that makes a process see its wall clock ``offset_seconds`` off (libfaketime;
    the monotonic clock is left alone). Fails with what to install if libfaketime is missing."""
    library = next((path for path in FAKETIME_LIBRARIES if Path(path).exists()), None)
    if library is None:
        raise RuntimeError(
            "libfaketime is not installed (looked for "
            f"{', '.join(FAKETIME_LIBRARIES)}); install Debian's `faketime` package"
        )
    return {
        "LD_PRELOAD": library,
        "FAKETIME": f"{offset_seconds:+g}s",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        # no shared-memory segment kept between the processes of one server (PostgreSQL forks)
        "FAKETIME_DISABLE_SHM": "1",
    }


def _postgres_bin() -> Path:
    """The newest installed PostgreSQL's server binaries."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not installed: install "
        "Debian's `postgresql` package"
    )


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1:``port`` (trust authentication)."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="taskrt-chaos-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.skew: float = 0.0
        self.frozen = False
        self._as_postgres = os.geteuid() == 0
        self.sockets.mkdir()
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)

    # --- plumbing ---------------------------------------------------------------------------

    def _run(
        self, *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        extra = [f"{k}={v}" for k, v in (env or {}).items()]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", "env", *extra, *command]
        elif extra:
            command = ["env", *extra, *command]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n"
                f"--- postgres log ---\n{self.log_tail()}"
            )
        return proc

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def libpq(self, database: str = "postgres") -> str:
        """libpq URL of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log_tail(self, lines: int = 80) -> str:
        """The end of the server's log."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, if it runs."""
        pid_file = self.data / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    # --- life -------------------------------------------------------------------------------

    def init(self) -> PostgresServer:
        """Create the cluster (``initdb``) and start it."""
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        return self.start()

    def start(self, skew: float = 0.0) -> PostgresServer:
        """Start the server (its clock ``skew`` seconds off) and wait until it accepts."""
        # fsync stays on: the crash test stops the postmaster, not the machine, so it is the
        # WAL not yet written (asynchronous commits) that a crash may undo, as in production.
        # The WAL writer's longest delay (10 s, default 0.2 s) and no full-page images (which
        # fill WAL pages and wake the WAL writer; they only matter when the machine crashes)
        # widen that window so that a crash soon after a claim does undo it, as it can in
        # production under load.
        options = (
            f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
            "-c max_connections=200 -c shared_buffers=32MB -c wal_writer_delay=10000 "
            "-c full_page_writes=off"
        )
        env = faketime_env(skew) if skew else None
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options,
            "-w", "-t", "60", "start", env=env,
        )  # fmt: skip
        self.skew = skew
        self.frozen = False
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until a connection succeeds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.libpq(), connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean) or ``immediate`` (a crash: no checkpoint; the
        next start runs crash recovery)."""
        self.thaw()
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> float:
        """Stop (``mode``) and start again at once; return how long it did not answer."""
        began = time.monotonic()
        self.stop(mode)
        self.start(self.skew)
        return time.monotonic() - began

    def crash(self) -> None:
        """Stop at once as a crash would (``pg_ctl stop -m immediate``): what is not in the
        WAL on disk, asynchronous commits included, is gone."""
        self.stop("immediate")

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend."""
        for pid in self._all_pids():
            os.kill(pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        """SIGCONT whatever :meth:`freeze` stopped."""
        if not self.frozen:
            return
        for pid in self._all_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = False

    def _all_pids(self) -> list[int]:
        """The postmaster and its children (the backends and background processes)."""
        root = self.pid
        if root is None:
            return []
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # the process ended meanwhile
            if int(fields[1]) == root:
                children.append(int(stat.parent.name))
        return [root, *children]

    def reset(self) -> None:
        """Running, thawed and with the true clock, whatever the last test left."""
        self.thaw()
        if self.pid is not None and self.skew == 0:
            try:
                self.wait_ready(timeout=5)
                return
            except psycopg.OperationalError:
                pass
        if self.pid is not None:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        self.start(0.0)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database ``name`` (from ``template``); return its SQLAlchemy URL."""
        with psycopg.connect(self.libpq(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            suffix = f' TEMPLATE "{template}"' if template else ""
            conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        self.thaw()
        if self.pid is not None:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def migrated_postgres(template: str) -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster holding database ``template`` with the taskrt schema;
    destroyed afterwards."""
    from taskrt.db import migrate
    from taskrt.db.engine import create_engine

    server = PostgresServer().init()
    try:
        engine = create_engine(server.create_database(template))
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        yield server
    finally:
        server.destroy()


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1:``port`` without persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RuntimeError("redis-server is not installed: install Debian's `redis-server`")
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="taskrt-chaos-redis-"))
        self.log_path = self.root / "redis.log"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def log_tail(self, lines: int = 60) -> str:
        """The end of the server's log."""
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def client(self) -> redis.Redis:
        """A new client on this server (short timeouts: the tests freeze it)."""
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2)

    @property
    def pid(self) -> int | None:
        """The server's process id, if it runs."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    def start(self) -> RedisServer:
        """Start an empty server and wait until it answers.

        Its clock cannot be skewed: Debian's redis-server is linked with jemalloc, which reads
        the clock while libfaketime initialises and hangs the server before it answers. The
        suite skews PostgreSQL instead, which gives both signs of Redis-versus-database skew."""
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.root),
                "--logfile", str(self.log_path), "--daemonize", "no",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.frozen = False
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15) -> None:
        """Wait until the server answers PING."""
        deadline = time.monotonic() + timeout
        while True:
            client = self.client()
            try:
                if client.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
            finally:
                client.close()

    def stop(self) -> None:
        """Kill the server (it keeps nothing: no RDB, no AOF)."""
        self.thaw()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart_empty(self) -> float:
        """Kill and start again on the same port with no data; return how long it was away."""
        began = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - began

    def flush(self) -> None:
        """FLUSHALL: every key gone, the server itself unchanged."""
        client = self.client()
        try:
            client.flushall()
        finally:
            client.close()

    def freeze(self) -> None:
        """SIGSTOP the server: connections stay open, nothing answers."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        """SIGCONT the server."""
        if self.frozen and self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
        self.frozen = False

    def reset(self) -> None:
        """Running, thawed and empty, whatever the last test left."""
        self.thaw()
        if self.pid is None:
            self.stop()
            self.start()
        self.flush()

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
