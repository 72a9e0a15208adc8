"""What a JSON value or a text field must be for every store to hold it and every read to return it.

Checked by the service layer, which the HTTP API, the Python client, the CLI and schedules all
call, so each entry point refuses the same input with the same field path:

- nesting no deeper than ``TASKRT_MAX_JSON_DEPTH`` arrays and objects (default 64): deeper
  values can be stored but not serialised again (pydantic stops at 255 levels, the standard
  library's encoder at about 1,000), so a task holding one could never be read;
- no lone surrogates (``"\\ud800"`` is valid JSON but cannot be encoded as UTF-8, so no
  database can store it) and no NUL characters (PostgreSQL text refuses them), in strings and
  in object keys;
- finite numbers only (JSON has no NaN or infinity).

The walk is iterative: a value nested 100,000 levels deep is refused, not a ``RecursionError``.
"""

from __future__ import annotations

import math
from typing import Any

DEFAULT_MAX_DEPTH = 64
"""Arrays and objects a JSON value may nest (``TASKRT_MAX_JSON_DEPTH``)."""

MAX_DEPTH_LIMIT = 200
"""The highest ``TASKRT_MAX_JSON_DEPTH`` allowed: responses wrap a payload in a few more levels,
and pydantic cannot serialise more than 255."""

Problem = dict[str, Any]


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None if it can."""
    if "\x00" in value:
        return "text must not contain NUL characters"
    return surrogate_problem(value)


def surrogate_problem(value: str) -> str | None:
    """Why ``value`` is not valid Unicode (it holds lone surrogates), or None."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "text must not contain lone surrogates (it must be valid Unicode)"
    return None


def text_problems(value: Any, loc: list[Any]) -> list[Problem]:
    """``[{"loc": loc, "msg": ...}]`` when ``value`` is a string that cannot be stored."""
    if isinstance(value, str):
        why = text_problem(value)
        if why is not None:
            return [{"loc": loc, "msg": why}]
    return []


def json_problems(
    value: Any, loc: list[Any], *, max_depth: int, unreadable_only: bool = False
) -> list[Problem]:
    """Every reason ``value`` cannot be stored as JSON and read back, each with its field path
    (``[*loc, "a", 0]``); an empty list when it can. Nesting beyond ``max_depth`` is reported
    once, at the first container too deep, and that branch is not walked further.

    ``unreadable_only`` reports only what no store could return (nesting and lone surrogates),
    leaving NUL characters and non-finite numbers to the store that refuses them."""
    found: list[Problem] = []
    too_deep = False
    # (value, where it sits, how many containers enclose it); a place is (parent place, key),
    # turned into a path only for a problem, so a clean payload costs no list copies
    stack: list[tuple[Any, _Place, int]] = [(value, None, 0)]
    while stack:
        item, place, depth = stack.pop()
        if isinstance(item, str):
            why = surrogate_problem(item) if unreadable_only else text_problem(item)
            if why is not None:
                found.append({"loc": _path(loc, place), "msg": why})
        elif isinstance(item, float):
            if not math.isfinite(item) and not unreadable_only:
                found.append({"loc": _path(loc, place), "msg": "numbers must be finite"})
        elif isinstance(item, dict | list | tuple):
            if depth >= max_depth:
                if not too_deep:
                    too_deep = True
                    found.append(
                        {
                            "loc": _path(loc, place)[: len(loc) + 3],
                            "msg": f"JSON is nested deeper than the limit of {max_depth} "
                            "levels (TASKRT_MAX_JSON_DEPTH)",
                        }
                    )
                continue
            if isinstance(item, dict):
                for key, child in item.items():
                    why = None
                    if isinstance(key, str):
                        why = surrogate_problem(key) if unreadable_only else text_problem(key)
                    if why is not None:
                        found.append({"loc": _path(loc, place), "msg": f"keys: {why}"})
                    else:
                        stack.append((child, (place, str(key)), depth + 1))
            else:
                stack.extend(
                    (child, (place, i), depth + 1)
                    for i, child in enumerate(item)
                    if isinstance(child, _CHECKED)  # ints, bools and None need nothing
                )
    return found


_Place = tuple[Any, str | int] | None
_CHECKED = (str, float, dict, list, tuple)


def _path(loc: list[Any], place: _Place) -> list[Any]:
    parts: list[Any] = []
    while place is not None:
        place, key = place
        parts.append(key)
    return [*loc, *reversed(parts)]


def nesting_depth(value: Any) -> int:
    """How many arrays and objects ``value`` nests (0 for a scalar), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item)
    return deepest
