"""Read the plugin tutorial's steps out of its markdown, and a shell to run them in.

A step is a fenced block that follows an HTML comment ``<!-- tutorial: KIND ... -->`` (blank
lines between the two are allowed; other guides use another tag, ``<!-- example: ... -->``).
The kinds:

- ``file PATH``: write the block to PATH; ``append PATH``: add it to the end of PATH;
- ``replace the line in PATH``: the block is one line ``NAME = ...`` that replaces the one line
  of PATH assigning NAME;
- ``run``: run the block in the tutorial's shell, which must succeed;
- ``run until it succeeds`` / ``run until the output has "TEXT"``: run it again until it
  succeeds (and prints TEXT), as a reader would while a worker gets to the task;
- ``output``: what the previous ``run`` printed (JSON blocks compare as JSON, others must occur
  in the output);
- ``worker``: the long-running command of a second terminal; a worker already running is
  stopped with Ctrl-C (SIGINT) first.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.DOTALL | re.MULTILINE)
KINDS = re.compile(
    r"(?P<kind>file|append) (?P<path>\S+)"
    r"|(?P<replace>replace the line in) (?P<rpath>\S+)"
    r"|(?P<run>run)(?: until (?:it succeeds|the output has \"(?P<until>[^\"]+)\"))?"
    r"|(?P<output>output)"
    r"|(?P<worker>worker)"
)


@dataclass(frozen=True)
class Step:
    """One marked block: what to do with it, where, and its text."""

    kind: str  # file, append, replace, run, output, worker
    body: str
    lang: str
    path: str = ""
    retry: bool = False
    until: str = ""
    line: int = 0  # where the marker is in the markdown, for messages


def parse_steps(markdown: str, tag: str = "tutorial") -> list[Step]:
    """Every block of ``markdown`` marked with ``tag``, in order; AssertionError for a
    malformed marker."""
    steps = []
    for marker in re.finditer(rf"<!--\s*{tag}:\s*(?P<spec>.*?)\s*-->", markdown):
        spec = marker.group("spec")
        line = markdown.count("\n", 0, marker.start()) + 1
        kind = KINDS.fullmatch(spec)
        assert kind is not None, f"line {line}: unknown tutorial marker {spec!r}"
        rest = markdown[marker.end() :]
        fence = FENCE.search(rest)
        missing = f"line {line}: the marker {spec!r} is not followed by a fenced block"
        assert fence is not None, missing
        assert not rest[: fence.start()].strip(), missing
        body, lang = fence.group("body"), fence.group("lang")
        if kind.group("kind"):
            steps.append(Step(kind.group("kind"), body, lang, kind.group("path"), line=line))
        elif kind.group("replace"):
            steps.append(Step("replace", body, lang, kind.group("rpath"), line=line))
        elif kind.group("run"):
            until = kind.group("until") or ""
            retry = spec != "run"
            steps.append(Step("run", body, lang, retry=retry, until=until, line=line))
        else:
            steps.append(Step(kind.group("output") or "worker", body, lang, line=line))
    return steps


def apply_file_step(step: Step, folder: Path) -> None:
    """Write, append to or edit the file a ``file``/``append``/``replace`` step names."""
    target = folder / step.path
    if step.kind == "file":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(step.body, encoding="utf-8")
    elif step.kind == "append":
        existing = target.read_text(encoding="utf-8") if target.exists() else ""
        joined = existing.rstrip("\n") + "\n\n\n" + step.body if existing.strip() else step.body
        target.write_text(joined, encoding="utf-8")
    else:
        new_line = step.body.strip("\n")
        assert "\n" not in new_line, f"line {step.line}: not one line"
        assert " = " in new_line, f"line {step.line}: not an assignment"
        name = new_line.split(" = ", 1)[0]
        lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
        hits = [i for i, text in enumerate(lines) if text.startswith(f"{name} = ")]
        assert len(hits) == 1, f"line {step.line}: {step.path} assigns {name} {len(hits)} times"
        lines[hits[0]] = new_line + "\n"
        target.write_text("".join(lines), encoding="utf-8")


def check_output(step: Step, printed: str) -> None:
    """AssertionError unless ``printed`` is what an ``output`` step shows."""
    if step.lang == "json":
        assert json.loads(printed) == json.loads(step.body), (
            f"line {step.line}: printed\n{printed}\nnot\n{step.body}"
        )
    else:
        assert step.body.strip() in printed, (
            f"line {step.line}: {step.body.strip()!r} not in\n{printed}"
        )


class Shell:
    """The reader's terminal: each block runs in bash with the working directory and the
    variables (``TASK=$(...)``) that the blocks before it left."""

    IGNORED = frozenset({"_", "SHLVL", "PWD", "OLDPWD"})

    def __init__(self, cwd: Path, env: dict[str, str], state_dir: Path) -> None:
        self.cwd = cwd
        self.env = env
        self.state_dir = state_dir
        state_dir.mkdir(parents=True, exist_ok=True)

    def run(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``script``; when it succeeds, keep its working directory and variables."""
        cwd_file, env_file = self.state_dir / "cwd", self.state_dir / "env"
        # set -a exports every variable the block assigns, so `env -0` sees them afterwards
        wrapped = (
            f"set -euo pipefail\nset -a\n{script}\nset +a\n"
            f"pwd > {shlex.quote(str(cwd_file))}\nenv -0 > {shlex.quote(str(env_file))}\n"
        )
        proc = subprocess.run(
            ["bash", "-c", wrapped],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode == 0:
            self.cwd = Path(cwd_file.read_text().strip())
            pairs = (item.partition("=") for item in env_file.read_text().split("\0") if item)
            self.env = {k: v for k, _, v in pairs if k not in self.IGNORED}
        return proc

    def run_until(
        self, script: str, until: str, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` until it succeeds and prints ``until``; the last attempt on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            proc = self.run(script, timeout=60)
            if proc.returncode == 0 and until in proc.stdout:
                return proc
            if time.monotonic() > deadline:
                return proc
            time.sleep(0.5)


class Terminal:
    """The second terminal: one long-running command, stopped with Ctrl-C."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, command: str, shell: Shell, ready: str, timeout: float = 60) -> None:
        """Stop what runs (SIGINT), start ``command`` where ``shell`` is, wait for ``ready``."""
        self.stop()
        assert "\n" not in command.strip(), f"a worker step is one command, not {command!r}"
        offset = len(self.log_bytes())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                ["bash", "-c", f"exec {command.strip()}"],
                cwd=shell.cwd,
                env=shell.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while ready.encode() not in self.log_bytes()[offset:]:
            assert self.proc.poll() is None, f"{command} exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"{command} did not print {ready!r}:\n{self.log()}"
            time.sleep(0.2)

    def stop(self, timeout: float = 30) -> int | None:
        """Ctrl-C the running command and wait for it; its exit status (None if none ran)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise AssertionError(
                    f"did not stop within {timeout} s of Ctrl-C:\n{self.log()}"
                ) from None
        return self.proc.returncode

    def log_bytes(self) -> bytes:
        """Everything the second terminal printed so far, as bytes."""
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def log(self) -> str:
        """Everything the second terminal printed so far."""
        return self.log_bytes().decode(errors="replace")
