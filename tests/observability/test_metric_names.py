"""The dashboard and the alert rules name only metrics taskrt exports (with the suffixes
Prometheus stores them under), the dashboard's queries are valid PromQL, and the metrics
catalogue (which the reference is generated from) is exactly what the registry exports."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from taskrt import metrics
from tests.observability.support import CONFIG
from tests.observability.test_alert_rules import promtool

DASHBOARD = CONFIG / "grafana" / "taskrt.json"
ALERTS = CONFIG / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\btaskrt_[a-z0-9_]+\b")
# Grafana's variables, replaced by something PromQL accepts before promtool parses a query
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$tenant": ".*",
    "$queue": ".*",
    "$task_type": ".*",
}


def _exported() -> set[str]:
    return {name for info in metrics.CATALOG for name in info.sample_names()}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _alert_exprs() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_the_dashboard_names_only_exported_metrics() -> None:
    named = set(METRIC.findall(" ".join(_strings(json.loads(DASHBOARD.read_text())))))
    assert named, "the dashboard names no taskrt metric"
    assert named <= _exported(), f"not exported: {sorted(named - _exported())}"


def test_the_alert_rules_name_only_exported_metrics() -> None:
    named = set(METRIC.findall(" ".join(_alert_exprs())))
    assert named <= _exported(), f"not exported: {sorted(named - _exported())}"


def test_the_dashboard_charts_every_metric() -> None:
    text = " ".join(_dashboard_queries())
    missing = [
        info.name
        for info in metrics.CATALOG
        if not any(name in text for name in info.sample_names())
    ]
    assert not missing, f"metrics no dashboard panel shows: {missing}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = []
    for index, query in enumerate(_dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"an unknown Grafana variable in {query}"
        rules.append({"record": f"dashboard:query_{index}", "expr": query})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", str(path))


def test_the_catalogue_is_what_the_registry_exports() -> None:
    kinds = {"counter": "counter", "histogram": "histogram", "gauge": "gauge"}
    registered = {(family.name, family.type) for family in metrics.REGISTRY.collect()}
    catalogue = {(info.name, kinds[info.kind]) for info in metrics.CATALOG}
    assert registered == catalogue
    assert all(info.name.startswith("taskrt_") for info in metrics.CATALOG)
    assert all(info.help.endswith(".") for info in metrics.CATALOG)
    # an unlabelled counter or histogram would write a file at import in multiprocess mode
    assert all(info.labels for info in metrics.CATALOG if info.kind != "gauge")


def test_the_metrics_reference_lists_every_metric_with_its_labels() -> None:
    from scripts.refdocs import metrics_ref as docs

    path = Path(__file__).resolve().parents[2] / "docs" / "reference" / "metrics.md"
    text = path.read_text(encoding="utf-8")
    assert text == docs.render_metrics(), "docs/reference/metrics.md is stale: run `make docs`"
    for family in metrics.REGISTRY.collect():
        info = next(i for i in metrics.CATALOG if i.name == family.name)
        heading = info.sample_names()[0] if info.kind == "counter" else info.name
        section = text[text.index(f"## `{heading}`") :]
        section = section[: section.find("\n## ", 1) if "\n## " in section[1:] else None]
        assert f"- Type: {info.kind}" in section
        assert family.documentation in section
        for label in info.labels:
            assert f"`{label}`" in section
