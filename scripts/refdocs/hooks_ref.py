"""The hooks reference (``hooks.md``): every hookspec with its signature, docstring and the
types it names."""

from __future__ import annotations

import ast
import inspect
import re
import types
from collections.abc import Callable
from typing import Any

from .common import GENERATED_NOTE


def _split_top(text: str) -> list[str]:
    """Split ``text`` on commas that are not inside brackets."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:index].strip())
            start = index + 1
    parts.append(text[start:].strip())
    return [part for part in parts if part]


def _callable_signature(annotation: str) -> str | None:
    """``Callable[[A, B], R]`` written as ``register(A, B) -> R``; None for other annotations."""
    if not (annotation.startswith("Callable[") and annotation.endswith("]")):
        return None
    parts = _split_top(annotation[len("Callable[") : -1])
    if len(parts) != 2:
        return None
    params = parts[0][1:-1] if parts[0].startswith("[") else parts[0]
    return f"register({params}) -> {parts[1]}"


LINE_LENGTH = 100
"""The project's line length (``[tool.ruff]``): ruff checks the Python blocks of the docs too."""


def _hook_signature(func: Callable[..., Any]) -> str:
    """``def name(arg: Type, ...) -> Return`` exactly as the annotations are written."""
    sig = inspect.signature(func)
    params = []
    for param in sig.parameters.values():
        text = param.name
        if param.annotation is not inspect.Parameter.empty:
            text += f": {param.annotation}"
        if param.default is not inspect.Parameter.empty:
            text += f" = {param.default!r}"
        params.append(text)
    returns = (
        "" if sig.return_annotation is inspect.Signature.empty else f" -> {sig.return_annotation}"
    )
    line = f"def {func.__name__}({', '.join(params)}){returns}: ..."
    if len(line) <= LINE_LENGTH:
        return line
    # laid out as the project's formatter lays out a long signature: one parameter per line
    body = "".join(f"    {param},\n" for param in params)
    return f"def {func.__name__}(\n{body}){returns}: ..."


def hookspecs_in_order() -> list[Callable[..., Any]]:
    """Every hookspec function of :mod:`taskrt.hookspecs`, in declaration order."""
    from taskrt import hookspecs

    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return [obj for obj in vars(hookspecs).values() if callable(obj) and hasattr(obj, marker)]


def _type_checking_imports(module: types.ModuleType) -> dict[str, str]:
    """Names a module imports under ``if TYPE_CHECKING:``, mapped to the module they come from."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    found.update({alias.name: stmt.module for alias in stmt.names})
                elif isinstance(stmt, ast.Import):
                    found.update({alias.name: alias.name for alias in stmt.names})
    return dict(sorted(found.items()))


def _summary(module_name: str, name: str) -> str:
    """First docstring line of ``module_name.name``; for a type alias, its definition."""
    import importlib

    module = importlib.import_module(module_name)
    obj: Any = module
    attrs = name.split(".")[1:] if name.startswith(f"{module_name}.") else [name]
    for attr in attrs:
        obj = getattr(obj, attr)
    if inspect.isclass(obj):
        return _rst_to_md(inspect.getdoc(obj) or "").split("\n", 1)[0]
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.Assign) and any(ast.unparse(t) == name for t in node.targets):
            return f"`{name} = {ast.unparse(node.value)}`"
    return ""


def _signature_types(specs: list[Callable[..., Any]]) -> list[tuple[str, str]]:
    """(name, module) of every type the hook signatures name, as the spec module imports them."""
    from taskrt import hookspecs

    annotations = " ".join(
        str(param.annotation)
        for spec in specs
        for param in inspect.signature(spec).parameters.values()
    )
    found = []
    for name, module_name in _type_checking_imports(hookspecs).items():
        if name == module_name:  # ``import click``: list the attributes used, e.g. click.Group
            used = sorted(set(re.findall(rf"\b{re.escape(name)}\.(\w+)", annotations)))
            found += [(f"{name}.{attr}", module_name) for attr in used]
        elif re.search(rf"\b{re.escape(name)}\b", annotations):
            found.append((name, module_name))
    return found


def _rst_to_md(text: str) -> str:
    """The little reStructuredText docstrings use, as markdown: roles and ``::`` blocks."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    out: list[str] = []
    literal = False
    for paragraph in text.split("\n\n"):
        if literal and paragraph.startswith("    "):
            out.append("```\n" + inspect.cleandoc(paragraph) + "\n```")
        else:
            out.append(paragraph[:-1] if paragraph.endswith("::") else paragraph)
        literal = paragraph.endswith("::")
    return "\n\n".join(out)


def render_hooks() -> str:
    """The hooks reference: every hookspec with its signature and docstring."""
    from taskrt import hookspecs

    specs = hookspecs_in_order()
    discovery = [spec for spec in specs if spec.__name__.startswith("register_")]
    observers = [spec for spec in specs if not spec.__name__.startswith("register_")]
    out = [
        GENERATED_NOTE.format(name="hooks"),
        "",
        "# Hooks reference",
        "",
        _rst_to_md(inspect.getdoc(hookspecs) or ""),
        "",
        "A minimal plugin module:",
        "",
        "```python",
        "import taskrt",
        "",
        "",
        "@taskrt.hookimpl",
        "def after_execute(ctx, outcome):",
        '    ctx.logger.info("run ended: %s", outcome.status)',
        "```",
        "",
        "| hook | kind | summary |",
        "|---|---|---|",
    ]
    for spec in specs:
        kind = "discovery" if spec in discovery else "observer"
        line = _rst_to_md(inspect.getdoc(spec) or "").split("\n", 1)[0].replace("|", r"\|")
        out.append(f"| [`{spec.__name__}`](#{spec.__name__}) | {kind} | {line} |")
    groups = [
        (
            "Discovery hooks",
            discovery,
            "They hand the plugin something to add to: a `register` callable owned by the core "
            "(which validates each registration and records the plugin behind it), or for "
            "`register_commands` the click group of the command line.",
        ),
        (
            "Observer hooks",
            observers,
            "Told what happened; a raising observer is logged, counted and otherwise ignored.",
        ),
    ]
    for title, group, intro in groups:
        out += ["", f"## {title}", "", intro]
        for spec in group:
            out += _hook_section(spec, hookspecs.PROJECT_NAME)
    out += ["", "## Types in hook signatures", "", "| name | from | summary |", "|---|---|---|"]
    for name, module_name in _signature_types(specs):
        out.append(f"| `{name}` | `{module_name}` | {_summary(module_name, name)} |")
    out.append("")
    return "\n".join(out)


HOOK_GUIDES = {
    "register_task_handlers": ("The plugin tutorial", "../tutorial-write-a-plugin.md"),
    "register_retry_strategies": (
        "The plugin tutorial",
        "../tutorial-write-a-plugin.md#4-a-retry-strategy",
    ),
    "register_auth_backends": ("Write an auth backend", "../how-to/auth-backends.md"),
}
"""Hook name -> (title, link relative to the reference) of the guide that walks through it."""


def _hook_section(spec: Callable[..., Any], project: str) -> list[str]:
    """The markdown section describing one hookspec."""
    out = ["", f"### `{spec.__name__}`", "", "```python", _hook_signature(spec), "```", ""]
    out.append(_rst_to_md(inspect.getdoc(spec) or "(no docstring)"))
    options = getattr(spec, f"{project}_spec")
    flags = [flag for flag in ("firstresult", "historic") if options.get(flag)]
    if flags:
        out += ["", "Options: " + ", ".join(f"`{flag}`" for flag in flags)]
    for param in inspect.signature(spec).parameters.values():
        register = _callable_signature(str(param.annotation))
        if param.name == "register" and register:
            out += ["", f"The core passes `register`, called as `{register}`."]
    if spec.__name__ in HOOK_GUIDES:
        title, link = HOOK_GUIDES[spec.__name__]
        out += ["", f"Step by step: [{title}]({link})."]
    return out
