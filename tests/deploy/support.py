"""Running the shipped deployment files for real: nginx with ``config/nginx/nginx.conf`` and
supervisord with ``supervisor/``, each from a temporary copy in which only ports and paths are
rewritten (every rewrite must match exactly once, so a change to the shipped file that a test
no longer understands fails loudly instead of being tested half)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import xmlrpc.client
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.support.procs import REPO_ROOT, wait_for

NGINX_CONF = REPO_ROOT / "config" / "nginx" / "nginx.conf"
SUPERVISOR_DIR = REPO_ROOT / "supervisor"
VENV_BIN = Path(sys.executable).parent


def rewrite(text: str, replacements: Mapping[str, str]) -> str:
    """Replace each key of ``replacements`` in ``text``; each must occur exactly once."""
    for old, new in replacements.items():
        count = text.count(old)
        if count != 1:
            raise AssertionError(
                f"expected {old!r} exactly once in the shipped file, found {count}"
            )
        text = text.replace(old, new)
    return text


def nginx_binary() -> str:
    """The nginx program (Debian installs it in /usr/sbin); a missing nginx fails the test."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise AssertionError("nginx is not installed: apt-get install -y nginx (.ci/run does)")
    return found


class Nginx:
    """nginx running ``config/nginx/nginx.conf`` in a temporary prefix, in the foreground."""

    def __init__(self, port: int, upstream_port: int) -> None:
        self.port = port
        self.upstream_port = upstream_port
        # Not under pytest's tmp_path: when the tests run as root, nginx's worker processes run
        # as an unprivileged user and must be able to reach their temporary-file folders.
        self.prefix = Path(tempfile.mkdtemp(prefix="taskrt-nginx-"))
        self.prefix.chmod(0o755)
        self.conf = self.prefix / "nginx.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the gateway."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        """The JSON access log."""
        return self.prefix / "access.log"

    @property
    def error_log(self) -> Path:
        """nginx's error log."""
        return self.prefix / "error.log"

    def render(self) -> str:
        """The shipped configuration with this instance's port, upstream and paths."""
        p = self.prefix
        temp_paths = "".join(
            f"    {kind}_temp_path {p}/{kind.split('_')[0]}_temp;\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return rewrite(
            NGINX_CONF.read_text(),
            {
                "listen 8080;": f"listen 127.0.0.1:{self.port};",
                "server api:8080 ": f"server 127.0.0.1:{self.upstream_port} ",
                "pid /run/nginx.pid;": f"pid {p}/nginx.pid;",
                "error_log /var/log/nginx/error.log warn;": f"error_log {p}/error.log info;",
                "access_log /var/log/nginx/access.log taskrt_json;": (
                    f"access_log {p}/access.log taskrt_json;"
                ),
                "http {\n": "http {\n" + temp_paths,
            },
        )

    def start(self, timeout: float = 15) -> Nginx:
        """Check the configuration with ``nginx -t``, start nginx, wait until it listens."""
        self.conf.write_text(self.render())
        base = [nginx_binary(), "-c", str(self.conf), "-p", f"{self.prefix}/"]
        checked = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, f"nginx -t failed:\n{checked.stderr}"
        with (self.prefix / "stderr.log").open("ab") as out:
            self.proc = subprocess.Popen(
                [*base, "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
            )

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited {self.proc.returncode}:\n{self.logs()}")
            try:
                httpx.get(f"{self.url}/", timeout=1)
            except httpx.TransportError:
                return False
            return True

        wait_for(listening, timeout, interval=0.05, message=f"nginx on port {self.port}")
        return self

    def access_entries(self) -> list[dict[str, Any]]:
        """The access log, one parsed JSON object per line (fails on a line that is not JSON)."""
        import json

        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line]

    def logs(self) -> str:
        """nginx's error log and its standard error, for failure messages."""
        parts = []
        for path in (self.error_log, self.prefix / "stderr.log"):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def stop(self, timeout: float = 10) -> None:
        """Graceful stop (SIGQUIT), kill if needed, and remove the prefix."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.prefix, ignore_errors=True)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_metrics_base(processes: int) -> int:
    """A base B whose ports ``B00``, ``B01``... are free now and stay clear of the kernel's
    ephemeral range (32768 and up on Linux), so a client connection of another test cannot take
    one between our check and the worker's bind (a worker that cannot bind its metrics port
    exits and supervisord never sees it RUNNING)."""
    for _ in range(200):
        base = random.randint(100, 326)  # ports 10000..32699
        if all(_port_free(base * 100 + n) for n in range(processes)):
            return base
    raise AssertionError("no free metrics ports in 10000..32699")


class Supervisord:
    """supervisord running the shipped ``supervisor/`` configuration from a temporary copy."""

    def __init__(self, env: Mapping[str, str], programs: str, log_path: Path) -> None:
        # A short folder of our own: the control socket's path must stay under 108 bytes.
        self.dir = Path(tempfile.mkdtemp(prefix="taskrt-sv-"))
        self.socket = self.dir / "supervisor.sock"
        self.conf = self.dir / "supervisor" / "supervisord.conf"
        self.log_path = log_path
        self.env = {
            **env,
            "TASKRT_SUPERVISOR_PROGRAMS": programs,
            "PATH": os.pathsep.join([str(VENV_BIN), env.get("PATH", os.defpath)]),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_base = _free_metrics_base(int(env.get("TASKRT_WORKER_PROCESSES", "2")))

    def render(self) -> None:
        """Copy ``supervisor/`` and point the pid file and the control socket into our folder."""
        shutil.copytree(SUPERVISOR_DIR, self.conf.parent)
        # the shipped workers serve metrics on 9100 + n; a test takes a random base instead,
        # so it never meets a node exporter or another test on this machine
        worker_conf = self.conf.parent / "programs" / "worker.conf"
        worker_conf.write_text(
            rewrite(
                worker_conf.read_text(),
                {
                    "--metrics-port 91%(process_num)02d": (
                        f"--metrics-port {self.metrics_base}%(process_num)02d"
                    )
                },
            )
        )
        self.conf.write_text(
            rewrite(
                self.conf.read_text(),
                {
                    "pidfile=/tmp/taskrt-supervisord.pid": f"pidfile={self.dir}/supervisord.pid",
                    "file=/tmp/taskrt-supervisor.sock": f"file={self.socket}",
                    "serverurl=unix:///tmp/taskrt-supervisor.sock": (
                        f"serverurl=unix://{self.socket}"
                    ),
                },
            )
        )

    def start(self) -> Supervisord:
        """Start supervisord (in the foreground, as configured) and wait for its socket."""
        self.render()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(VENV_BIN / "supervisord"), "-c", str(self.conf)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"supervisord exited {self.proc.returncode}:\n{self.log()}")
            try:
                self.processes()
            except (OSError, xmlrpc.client.Fault):
                return False
            return True

        wait_for(up, 15, interval=0.05, message="supervisord's control socket")
        return self

    def rpc(self) -> Any:
        """supervisord's XML-RPC interface over its unix socket (what supervisorctl uses)."""
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def processes(self) -> dict[str, dict[str, Any]]:
        """Every supervised process by name: its state name, pid and so on."""
        return {info["name"]: info for info in self.rpc().getAllProcessInfo()}

    def wait_running(self, names: list[str], timeout: float = 20) -> dict[str, int]:
        """Wait until every process in ``names`` is RUNNING; return their pids."""

        seen: dict[str, str] = {}

        def running() -> dict[str, int] | None:
            infos = self.processes()
            seen.clear()
            seen.update({n: infos[n]["statename"] for n in names if n in infos})
            if len(seen) == len(names) and set(seen.values()) == {"RUNNING"}:
                return {n: int(infos[n]["pid"]) for n in names}
            return None

        try:
            return wait_for(running, timeout, interval=0.05, message=f"{names} RUNNING")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; states {seen}; log:\n{self.log()[-3000:]}") from None

    def terminate(self, timeout: float) -> int:
        """SIGTERM to supervisord; return its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        """supervisord's output: its own log lines and every program's (all on stdout)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Stop supervisord and its programs if still running, and remove its folder (the log
        stays)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
