"""The retention settings: durations written `7d`, `12h`, `30m`, `45s` or `0`, refused with a
message naming the setting otherwise."""

from __future__ import annotations

import pytest

from taskrt.exceptions import ConfigurationError
from taskrt.prune import pause_after
from taskrt.settings import load_settings
from taskrt.settings_values import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 604800.0), ("12h", 43200.0), ("30m", 1800.0), ("45s", 45.0), ("0", 0.0),
     ("90", 90.0), (" 2D ", 172800.0), ("1.5h", 5400.0)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7 weeks", "-1d", "d", "1d2h", "1w"])
def test_bad_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a number followed by d, h, m or s"):
        parse_duration(text)


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert (
        settings.retention_completed,
        settings.retention_failed,
        settings.retention_cancelled,
        settings.retention_audit,
        settings.retention_schedule_fires,
    ) == ("7d", "30d", "7d", "365d", "30d")
    monkeypatch.setenv("TASKRT_RETENTION_FAILED", "12h")
    assert load_settings().retention_failed == "12h"


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKRT_RETENTION_AUDIT", "a year")
    with pytest.raises(ConfigurationError, match="retention_audit"):
        load_settings()


@pytest.mark.parametrize(
    ("busy", "duty", "pause"), [(1.0, 1.0, 0.0), (1.0, 0.25, 3.0), (0.2, 0.5, 0.2)]
)
def test_pause_after_keeps_the_duty_cycle(busy: float, duty: float, pause: float) -> None:
    assert pause_after(busy, duty) == pytest.approx(pause)
    assert busy / (busy + pause_after(busy, duty)) == pytest.approx(duty)


def test_duty_is_a_share() -> None:
    for bad in (0, 1.5):
        with pytest.raises(ConfigurationError, match="retention_duty"):
            load_settings(retention_duty=bad)
