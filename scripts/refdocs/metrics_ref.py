"""The metrics reference (``metrics.md``), from the metrics catalogue."""

from __future__ import annotations

from .common import GENERATED_NOTE


def render_metrics() -> str:
    """The metrics reference: every metric of :data:`taskrt.metrics.CATALOG`."""
    from taskrt.metrics import CATALOG

    out = [
        GENERATED_NOTE.format(name="metrics"),
        "",
        "# Metrics reference",
        "",
        "Every Prometheus metric taskrt exports, with its type, labels and help text. The HTTP "
        "API serves them at `/metrics` on its own port; `taskrt worker` and `taskrt scheduler` "
        "serve them on `--metrics-port` (`TASKRT_METRICS_PORT`), one port per process. Each "
        "process exports what it does: a worker its runs, the API its requests and the tasks "
        "it created, a scheduler its fires; sum counters over processes with `sum by (...)`. "
        "Queue depth is read from the store at scrape time and may come from several "
        "processes: aggregate it with `max by (queue, state)`. Single processes also export "
        "prometheus-client's standard `process_*` and `python_*` metrics. How to scrape, "
        "alert and chart them: [the observability how-to](../how-to/observability.md).",
        "",
        "| metric | type | labels | help |",
        "|---|---|---|---|",
    ]
    for info in CATALOG:
        name = info.sample_names()[0] if info.kind == "counter" else info.name
        labels = ", ".join(f"`{label}`" for label in info.labels) or "none"
        first = info.help.split(". ")[0].rstrip(".").replace("|", r"\|")
        out.append(f"| [`{name}`](#{name}) | {info.kind} | {labels} | {first}. |")
    for info in CATALOG:
        name = info.sample_names()[0] if info.kind == "counter" else info.name
        out += ["", f"## `{name}`", "", info.help, ""]
        out.append(f"- Type: {info.kind}")
        out.append("- Labels: " + (", ".join(f"`{label}`" for label in info.labels) or "none"))
        out.append("- Series: " + ", ".join(f"`{series}`" for series in info.sample_names()))
    out.append("")
    return "\n".join(out)
