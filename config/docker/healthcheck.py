#!/usr/bin/env python3
"""The container health check of the taskrt image (installed as ``taskrt-healthcheck``).

One image runs every taskrt process, so the check depends on what the container runs, named by
``TASKRT_HEALTHCHECK`` (the Dockerfile's default is ``api``):

- ``api``: ``GET /healthz`` on ``127.0.0.1:$TASKRT_API_PORT`` (default 8080) answers 200.
- ``supervisor``: every program supervisord runs is RUNNING (``supervisorctl status`` exits 0);
  for the worker containers, where supervisord keeps the ``taskrt worker`` processes alive.
- ``none``: always healthy; for a process that is its container's main process (``taskrt
  scheduler``), whose death already ends the container.

Exit status 0 is healthy, 1 unhealthy (Docker's convention). Kubernetes ignores Docker health
checks: there the pod's probes call ``/healthz`` and ``/readyz`` (docs/deploy.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

SUPERVISOR_CONF = "/etc/taskrt/supervisor/supervisord.conf"


def check_api() -> str | None:
    """None when the API's liveness probe answers 200, else the reason."""
    port = os.environ.get("TASKRT_API_PORT", "8080")
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return None if response.status == 200 else f"{url} answered {response.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def check_supervisor() -> str | None:
    """None when supervisord runs and every program it supervises is RUNNING."""
    conf = os.environ.get("TASKRT_SUPERVISOR_CONF", SUPERVISOR_CONF)
    try:
        proc = subprocess.run(
            ["supervisorctl", "-c", conf, "status"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"supervisorctl: {exc}"
    if proc.returncode != 0:
        return f"supervisorctl status exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return None


def main() -> int:
    """Run the check ``TASKRT_HEALTHCHECK`` names."""
    mode = os.environ.get("TASKRT_HEALTHCHECK", "api")
    checks = {"api": check_api, "supervisor": check_supervisor, "none": lambda: None}
    if mode not in checks:
        print(f"TASKRT_HEALTHCHECK={mode!r}: use one of {', '.join(checks)}", file=sys.stderr)
        return 1
    problem = checks[mode]()
    if problem:
        print(f"unhealthy ({mode}): {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
