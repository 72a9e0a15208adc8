#!/usr/bin/env bash
# Build taskrt's wheel, install it NON-editable into a fresh venv and check that it works there:
# every module imports, every file of the source packages (Lua scripts, migrations, templates ...)
# is inside the wheel, and the console script runs with the built-in plugins. Then install the
# example handlers' wheel beside it and check that taskrt discovers them through the entry point.
# An editable install reads the source tree, so it hides packaging mistakes; this does not.
#
# Usage: scripts/check_wheel.sh   (PYTHON=path/to/python picks the interpreter that runs `build`;
# default .venv/bin/python). Exits non-zero on the first failure, saying which check failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/taskrt-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

step() { printf '==> check-wheel: %s\n' "$*"; }
fail() { printf 'check-wheel FAILED: %s\n' "$*" >&2; exit 1; }

[ -x "$PYTHON" ] || fail "no interpreter at $PYTHON (run \`make install\` or set PYTHON)"
# Absolute, since the checks below run elsewhere; not through realpath, which would leave the venv.
PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"

step "building the taskrt wheel"
"$PYTHON" -m build --wheel --outdir "$WORK/dist" "$ROOT" >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log" >&2; fail "python -m build --wheel"; }
WHEEL="$(ls "$WORK"/dist/taskrt-*.whl)"
echo "    $(basename "$WHEEL")"

step "checking that every file of core/taskrt and plugins/taskrt_plugins is in the wheel"
"$PYTHON" - "$ROOT" "$WHEEL" <<'PY' || fail "wheel contents"
import sys
import zipfile
from pathlib import Path

root, wheel = Path(sys.argv[1]), sys.argv[2]
in_wheel = set(zipfile.ZipFile(wheel).namelist())
expected = set()
for source_root, package in (("core", "taskrt"), ("plugins", "taskrt_plugins")):
    for path in (root / source_root / package).rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            expected.add(path.relative_to(root / source_root).as_posix())
missing = sorted(expected - in_wheel)
migrations = [n for n in in_wheel if n.startswith("taskrt/db/migrations/versions/") and n.endswith(".py")]
data = sorted(n for n in expected if not n.endswith(".py"))
print(f"    {len(expected)} source files, {len(data)} of them data: {', '.join(data) or 'none'}")
print(f"    {len(migrations)} migration version file(s) in the wheel")
if missing:
    sys.exit("missing from the wheel: " + ", ".join(missing))
if not migrations:
    sys.exit("no migration version files under taskrt/db/migrations/versions in the wheel")
PY

step "installing the wheel into a fresh venv (not editable)"
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install --quiet "$WHEEL" >"$WORK/pip.log" 2>&1 \
  || { cat "$WORK/pip.log" >&2; fail "pip install $(basename "$WHEEL")"; }

mkdir "$WORK/run"
cd "$WORK/run"  # nothing below may see the source tree

step "importing every module of taskrt and taskrt_plugins from the installed wheel"
"$VPY" -I - <<'PY' || fail "imports"
import importlib
import pkgutil
import sysconfig
import traceback
from pathlib import Path

site = Path(sysconfig.get_paths()["purelib"]).resolve()
# Alembic's env.py and the version files run only inside an Alembic context: they are checked
# as files here and exercised by `taskrt db upgrade` below.
NEEDS_ALEMBIC = "taskrt.db.migrations."
failures: dict[str, str] = {}  # module -> traceback; a package that fails is reported once
imported = as_files = 0


def walk_error(name: str) -> None:
    failures.setdefault(name, traceback.format_exc(limit=3))


for top in ("taskrt", "taskrt_plugins"):
    package = importlib.import_module(top)
    location = Path(package.__file__).resolve()
    if site not in location.parents:
        failures[top] = f"imported from {location}, not from the venv's site-packages"
    imported += 1
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{top}.", onerror=walk_error):
        if info.name.startswith(NEEDS_ALEMBIC):
            leaf = info.name.rsplit(".", 1)[1]
            folder = Path(info.module_finder.path)
            if not ((folder / f"{leaf}.py").is_file() or (folder / leaf).is_dir()):
                failures[info.name] = "file missing"
            as_files += 1
            continue
        try:
            importlib.import_module(info.name)
            imported += 1
        except Exception:
            failures.setdefault(info.name, traceback.format_exc(limit=3))
print(f"    imported {imported} modules; {as_files} Alembic module(s) checked as files")
if failures:
    raise SystemExit("".join(f"cannot import {k}: {v}\n" for k, v in failures.items()))
PY

# Run the CLI with a clean environment: no developer TASKRT_* settings, no source tree on the path.
run_cli() { env -i HOME="$WORK/run" PATH="$WORK/venv/bin:/usr/local/bin:/usr/bin:/bin" LANG=C.UTF-8 "$@"; }

step "taskrt --version"
EXPECTED_VERSION="$("$VPY" -I -c 'import taskrt; print(taskrt.__version__)')"
VERSION_OUT="$(run_cli taskrt --version)" || fail "taskrt --version exited non-zero"
echo "    $VERSION_OUT"
[[ "$VERSION_OUT" == *"$EXPECTED_VERSION"* ]] || fail "taskrt --version printed '$VERSION_OUT'"

step "taskrt db upgrade on a SQLite file (migrations load from the wheel)"
DB_ENV=(env TASKRT_DATABASE_URL="sqlite:///$WORK/run/check.db")
run_cli "${DB_ENV[@]}" taskrt db upgrade >"$WORK/db.log" 2>&1 \
  || { cat "$WORK/db.log" >&2; fail "taskrt db upgrade"; }
run_cli "${DB_ENV[@]}" taskrt db current >"$WORK/db.log" 2>&1 || true
grep -q "up to date" "$WORK/db.log" \
  || { cat "$WORK/db.log" >&2; fail "taskrt db current does not report the database up to date"; }
grep "^current:" "$WORK/db.log" | sed 's/^/    /'

check_plugins() {  # $1: extra python assertions on `data`
  run_cli taskrt plugins --json >"$WORK/plugins.json" || fail "taskrt plugins --json exited non-zero"
  "$VPY" -I - "$WORK/plugins.json" "$1" <<'PY'
import json
import sys

data = json.load(open(sys.argv[1]))
strategies = {s["name"]: s["distribution"] for s in data["retry_strategies"]}
tasks = {t["name"]: t["distribution"] for t in data["task_types"]}
print(f"    retry strategies: {', '.join(f'{k} ({v})' for k, v in sorted(strategies.items()))}")
print(f"    task types: {', '.join(f'{k} ({v})' for k, v in sorted(tasks.items())) or 'none'}")
problems = [f"plugin failed to load: {f}" for f in data["failures"]]
for name in ("exponential", "fixed", "linear", "none"):
    if strategies.get(name) != "taskrt":
        problems.append(f"built-in retry strategy {name!r} missing or not from taskrt")
exec(sys.argv[2])
if problems:
    sys.exit("; ".join(problems))
PY
}

step "taskrt plugins --json lists the built-in retry strategies"
check_plugins "" || fail "taskrt plugins --json (core wheel alone)"

step "building and installing the handlers_example wheel beside it"
"$PYTHON" -m build --wheel --outdir "$WORK/dist-example" "$ROOT/handlers_example" \
  >"$WORK/build-example.log" 2>&1 || { cat "$WORK/build-example.log" >&2; fail "build handlers_example"; }
"$VPY" -m pip install --quiet "$WORK"/dist-example/*.whl >"$WORK/pip-example.log" 2>&1 \
  || { cat "$WORK/pip-example.log" >&2; fail "pip install the handlers_example wheel"; }

step "taskrt plugins --json sees the example handlers through their entry point"
check_plugins '
for name in ("example.echo", "example.sleep", "example.flaky", "example.word_count"):
    if tasks.get(name) != "taskrt-handlers-example":
        problems.append(f"task type {name!r} missing or not from taskrt-handlers-example")
if strategies.get("example.fibonacci") != "taskrt-handlers-example":
    problems.append("retry strategy example.fibonacci missing")
' || fail "taskrt plugins --json (with the example handlers)"

step "OK: the wheel installs, imports and runs"
