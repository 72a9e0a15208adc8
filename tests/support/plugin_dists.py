"""Throwaway plugin distributions and temporary venvs, for discovery through real entry points.

A test describes a plugin distribution (name, version, module source, entry-point name), builds
its wheel with hatchling (no network, no build isolation), and installs it with pip into a fresh
venv next to a wheel of taskrt itself. The venv borrows taskrt's dependencies (pluggy, pydantic,
...) from the development venv through a ``.pth`` file, so nothing is downloaded and creating
one takes about a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT = 120


@dataclass(frozen=True)
class PluginDist:
    """A plugin distribution to build: one module exposed through one ``taskrt`` entry point."""

    distribution: str
    module: str
    source: str
    entry_point: str = "plugin"
    version: str = "1.0.0"

    def write(self, root: Path) -> Path:
        """Write the project (pyproject.toml and the module) under ``root``; return its folder."""
        project = root / self.distribution
        package = project / "src" / self.module
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(textwrap.dedent(self.source))
        (project / "pyproject.toml").write_text(
            textwrap.dedent(
                f"""\
                [build-system]
                requires = ["hatchling"]
                build-backend = "hatchling.build"

                [project]
                name = "{self.distribution}"
                version = "{self.version}"
                requires-python = ">=3.11"
                dependencies = ["taskrt"]

                [project.entry-points.taskrt]
                {self.entry_point} = "{self.module}"

                [tool.hatch.build.targets.wheel]
                packages = ["src/{self.module}"]
                """
            )
        )
        return project


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False, **kwargs
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed with exit code {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def build_wheels(dists: list[PluginDist], workdir: Path) -> dict[str, Path]:
    """Build a wheel of each plugin distribution (one pip call); map distribution -> wheel."""
    wheel_dir = workdir / "wheels"
    wheel_dir.mkdir(parents=True, exist_ok=True)
    projects = [str(dist.write(workdir / "src")) for dist in dists]
    _run(
        [
            sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
            "--no-build-isolation", "--wheel-dir", str(wheel_dir), *projects,
        ]
    )  # fmt: skip
    wheels = {}
    for dist in dists:
        stem = dist.distribution.replace("-", "_")
        (wheel,) = wheel_dir.glob(f"{stem}-{dist.version}-*.whl")
        wheels[dist.distribution] = wheel
    return wheels


def build_taskrt_wheel(workdir: Path) -> Path:
    """Build a (non-editable) wheel of taskrt from this checkout."""
    wheel_dir = workdir / "taskrt-wheel"
    _run(
        [
            sys.executable, "-m", "build", "--wheel", "--no-isolation",
            "--outdir", str(wheel_dir), str(REPO_ROOT),
        ]
    )  # fmt: skip
    (wheel,) = wheel_dir.glob("taskrt-*.whl")
    return wheel


@dataclass(frozen=True)
class Venv:
    """A temporary venv with taskrt and some plugin distributions installed."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def taskrt(self) -> Path:
        return self.path / "bin" / "taskrt"

    def run_taskrt(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run this venv's ``taskrt`` console script with a clean taskrt environment."""
        return subprocess.run(
            [str(self.taskrt), *args],
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_TIMEOUT,
            check=False,
            env=clean_env(env),
            cwd=cwd or self.path,
        )

    def plugins_json(self, env: dict[str, str] | None = None) -> dict[str, Any]:
        """``taskrt plugins --json``, parsed; fails with the output if the command failed."""
        result = self.run_taskrt("plugins", "--json", env=env)
        assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
        data: dict[str, Any] = json.loads(result.stdout)
        return data


def make_venv(path: Path, wheels: list[Path]) -> Venv:
    """Create a venv at ``path`` and pip-install ``wheels`` (without dependencies) into it.

    The wheels go in first, through pip's ``--python`` option; only then is the ``.pth`` added
    that lends the development venv's site-packages, so pip never sees (nor tries to replace)
    the editable taskrt installed there.
    """
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    venv = Venv(path)
    _run(
        [
            sys.executable, "-m", "pip", "--python", str(venv.python), "install", "--quiet",
            "--no-deps", "--no-index", "--ignore-installed", "--no-compile",
            *map(str, wheels),
        ]
    )  # fmt: skip
    site_packages = _site_packages(venv.python)
    dev_site_packages = sysconfig.get_paths()["purelib"]
    # addsitedir (not a bare path line) so the dev venv's own .pth files are processed too.
    (site_packages / "zz_taskrt_dev_deps.pth").write_text(
        f"import site; site.addsitedir({dev_site_packages!r})\n"
    )
    return venv


def _site_packages(python: Path) -> Path:
    result = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    return Path(result.stdout.strip())


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment minus taskrt settings and their platform fallbacks, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not (key.startswith("TASKRT_") and not key.startswith("TASKRT_TEST_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "PYTHONPATH", "VIRTUAL_ENV"}
    }
    env.update(extra or {})
    return env
