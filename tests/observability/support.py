"""Reading what taskrt processes expose: Prometheus scrapes and JSON log lines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

CONFIG = Path(__file__).resolve().parents[2] / "config"


@dataclass(frozen=True)
class Scrape:
    """One scrape: every sample by name and labels."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        wanted = set(labels.items())
        return sum(v for (n, have), v in self.samples.items() if n == name and wanted <= have)

    def labels_of(self, name: str) -> list[dict[str, str]]:
        """The label sets of every sample of ``name``."""
        return [dict(have) for (n, have) in self.samples if n == name]

    def names(self) -> set[str]:
        """Every sample name."""
        return {n for n, _ in self.samples}


def parse(text: str) -> Scrape:
    """Parse the Prometheus text format."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples)


def scrape(url: str) -> Scrape:
    """GET ``url`` (a /metrics endpoint) and parse it."""
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return parse(response.text)


def summed(scrapes: list[Scrape], name: str, **labels: str) -> float:
    """``name`` summed over several processes' scrapes."""
    return sum(s.value(name, **labels) for s in scrapes)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every JSON log line of a process's output (other lines, e.g. a test harness's
    ``==== start`` markers, are skipped; a line that starts like JSON must parse)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def about(lines: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """The lines about ``task_id``: carrying it as a field or naming it in the message."""
    return [line for line in lines if line.get("task_id") == task_id or task_id in line["message"]]
