"""The benchmark suite: ``python -m bench`` (``make bench``), ``python -m bench --quick``.

Measures enqueue throughput, drain throughput, pickup latency, worker RSS, queue depth
scaling and history at scale (issue 15: prune; drain and pickup with the workers' automatic
pruning, and while ``taskrt prune`` runs; search on millions of finished tasks) on the real
PostgreSQL and Redis, prints one table (each figure next to its target from issues 9 and 15)
and writes the whole run as JSON to ``bench/results/<UTC time>.json`` and
``bench/results/latest.json`` (``...-quick.json`` and ``latest-quick.json`` for ``--quick``).
docs/performance.md explains every figure. Benchmarks never assert: a missed target is
printed as MISSED and the exit status stays 0; it is 1 only when a measurement failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench import calibrate, depth, drain, enqueue, history, pickup
from bench.env import REPO_ROOT
from bench.machine import facts, load_average
from bench.report import figures, table

MEASUREMENTS = ("calibrate", "enqueue", "drain", "pickup", "rss", "depth", "history")
BACKENDS = ("redis", "postgresql", "sqlite")
PICKUP_BACKENDS = ("redis", "postgresql")


def _sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "enqueue": enqueue.Sizes.quick(),
            "drain_tasks": 300,
            "pickup_tasks": 200,
            "pickup_rate": 200.0,
            "depth": depth.QUICK,
            "calibrate": {"samples": 500, "copy_rows": 20_000},
            "history": history.Sizes.quick(),
        }
    return {
        "enqueue": enqueue.Sizes(),
        "drain_tasks": 20_000,
        "pickup_tasks": 2000,
        "pickup_rate": 200.0,
        "depth": depth.FULL,
        "calibrate": {"samples": 2000, "copy_rows": 200_000},
        "history": history.Sizes(),
    }


def _say(text: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {text}", file=sys.stderr, flush=True)


class Run:
    """Runs measurements, keeps their results, errors and durations."""

    def __init__(self) -> None:
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.seconds: dict[str, float] = {}

    def step(self, name: str, call: Callable[[], Any]) -> Any:
        """Run one measurement; a failure is recorded and reported, and the run goes on."""
        _say(f"{name} ...")
        started = time.perf_counter()
        try:
            result = call()
        except Exception:  # a broken measurement must not hide the others
            self.errors[name] = traceback.format_exc()
            _say(f"{name} FAILED:\n{self.errors[name]}")
            result = None
        self.seconds[name] = round(time.perf_counter() - started, 1)
        _say(f"{name} done in {self.seconds[name]:.1f} s")
        return result


def _rss(drained: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "source": source,
        "idle_mib": drained["rss_idle_mib"][0],
        "load_mib": drained["rss_load_peak_mib"][0],
        "load_median_mib": drained["rss_load_median_mib"][0],
    }


def run(args: argparse.Namespace) -> tuple[Run, float]:
    """Every selected measurement."""
    sizes = _sizes(args.quick)
    only = set(args.only)
    backends = [b for b in BACKENDS if b in args.backends]
    state = Run()
    started = time.perf_counter()

    if "calibrate" in only:
        result = state.step("calibrate", lambda: calibrate.measure(**sizes["calibrate"]))
        if result is not None:
            state.results["calibrate"] = result

    if "enqueue" in only:
        result = state.step("enqueue", lambda: enqueue.measure(sizes["enqueue"], auth=args.auth))
        if result is not None:
            state.results["enqueue"] = result

    if "drain" in only:
        state.results["drain"] = []
        for backend in backends:
            for workers in (1, 2):
                result = state.step(
                    f"drain {backend} x{workers}",
                    partial(drain.measure, sizes["drain_tasks"], workers, 8, backend),
                )
                if result is not None:
                    state.results["drain"].append(result)
                    _say(f"  {result['tasks_per_s']:,.0f} tasks/s")

    if "rss" in only:
        loaded = next(
            (
                d
                for d in state.results.get("drain", [])
                if d["backend"] == "redis" and d["workers"] == 1
            ),
            None,
        )
        if loaded is not None:
            state.results["rss"] = _rss(loaded, "drain redis x1")
        else:
            result = state.step(
                "rss (drain redis x1)", lambda: drain.measure(sizes["drain_tasks"], 1, 8, "redis")
            )
            if result is not None:
                state.results["rss"] = _rss(result, "drain redis x1 (run for rss)")

    if "pickup" in only:
        state.results["pickup"] = []
        for backend in (b for b in PICKUP_BACKENDS if b in backends):
            result = state.step(
                f"pickup {backend}",
                partial(
                    pickup.measure, sizes["pickup_tasks"], sizes["pickup_rate"], backend=backend
                ),
            )
            if result is not None:
                state.results["pickup"].append(result)
                _say(f"  p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms")

    if "depth" in only:
        result = state.step("depth", lambda: depth.measure(**sizes["depth"]))
        if result is not None:
            state.results["depth"] = result

    if "history" in only:
        # filled as it goes: a failure late in the measurement keeps the figures before it
        found: dict[str, Any] = {}
        state.step("history", lambda: history.measure(sizes["history"], found))
        if found:
            state.results["history"] = found
    return state, time.perf_counter() - started


def _csv(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(choices)}"
            )
        return names

    return parse


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (the CI smoke run, about a minute)"
    )
    parser.add_argument(
        "--only",
        type=_csv(MEASUREMENTS),
        default=list(MEASUREMENTS),
        help=f"comma-separated subset of: {','.join(MEASUREMENTS)}",
    )
    parser.add_argument(
        "--backends",
        type=_csv(BACKENDS),
        default=list(BACKENDS),
        help="queue backends for drain and pickup (default: all; pickup skips sqlite)",
    )
    parser.add_argument(
        "--no-auth",
        dest="auth",
        action="store_false",
        help="HTTP modes with TASKRT_AUTH_DISABLED=true and no rate limiter (default: API keys)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "bench" / "results",
        help="folder for the JSON results (default: bench/results)",
    )
    args = parser.parse_args(argv)

    began = datetime.now(UTC)
    load_before = load_average()
    machine = facts()
    _say(
        f"{'quick' if args.quick else 'full'} run: {', '.join(args.only)}; "
        f"{machine['cpu']['count']} x {machine['cpu']['model']}, load {load_before}"
    )
    state, seconds = run(args)
    rows = figures(state.results)
    document = {
        "started_at": began.isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "mode": "quick" if args.quick else "full",
        "only": args.only,
        "backends": args.backends,
        "http_auth": "apikey" if args.auth else "disabled",
        "sizes": {
            key: dataclasses.asdict(value)
            if isinstance(value, enqueue.Sizes | history.Sizes)
            else value
            for key, value in _sizes(args.quick).items()
        },
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": machine,
        "load_average": {"before": load_before, "after": load_average()},
        "step_seconds": state.seconds,
        "figures": [f.to_dict() for f in rows],
        "results": state.results,
        "errors": state.errors,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    stamped = args.out / f"{began:%Y%m%dT%H%M%SZ}{suffix}.json"
    text = json.dumps(document, indent=2, default=str) + "\n"
    stamped.write_text(text, encoding="utf-8")
    (args.out / f"latest{suffix}.json").write_text(text, encoding="utf-8")

    git = machine["git"]
    commit = f"{(git['commit'] or '?')[:10]}{' (dirty)' if git['dirty'] else ''}"
    print()
    print(f"taskrt benchmarks, {document['mode']} run, {began:%Y-%m-%d %H:%M} UTC, commit {commit}")
    print(
        f"{machine['cpu']['count']} x {machine['cpu']['model']}, {machine['python']}, "
        f"PostgreSQL {machine['postgresql']['version']}, Redis {machine['redis']['version']}; "
        f"load average {load_before[0]} before, {document['load_average']['after'][0]} after"
    )
    if load_before[0] > 0.5 * machine["cpu"]["count"]:
        print("the machine was busy before the run (1-minute load above half the CPUs): figures")
        print("may be low; the load after the run includes the benchmark's own processes")
    if args.quick:
        print("quick run: sizes far too small to judge the targets; met/MISSED is indicative only")
    print()
    print(table(rows))
    print()
    print(f"{len(rows)} figures in {seconds:.0f} s; JSON: {stamped} (and latest{suffix}.json)")
    if state.errors:
        print(f"FAILED measurements: {', '.join(state.errors)} (tracebacks in the JSON)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
