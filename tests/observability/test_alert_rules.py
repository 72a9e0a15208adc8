"""The alert rules and the scrape config are valid, and the rules' unit tests pass, by the
real `promtool` (Debian's `prometheus` package; `.ci/run` installs it). A missing promtool is
a failure, never a skip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.observability.support import CONFIG

PROMETHEUS = CONFIG / "prometheus"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    """Run promtool; fail with its output unless it succeeds."""
    binary = shutil.which("promtool")
    assert binary is not None, (
        "promtool is not installed: `apt-get install prometheus` (what .ci/run does) or put "
        "Prometheus's promtool on PATH"
    )
    proc = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def test_alert_rules_are_valid() -> None:
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")


def test_alert_rule_unit_tests_pass() -> None:
    tests = sorted(str(p.relative_to(PROMETHEUS)) for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert tests, "config/prometheus/tests holds no rule tests"
    assert "SUCCESS" in promtool("test", "rules", *tests)


def test_every_alert_has_a_firing_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r}
    fired = set()
    for path in (PROMETHEUS / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert alerts == fired, f"alerts without a test that makes them fire: {alerts - fired}"


def test_example_scrape_config_is_valid() -> None:
    output = promtool("check", "config", "prometheus.yml")
    assert "is valid prometheus config file syntax" in output
