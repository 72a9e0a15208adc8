"""Declaring task types: the ``@task`` decorator and the :class:`TaskType` it returns.

A plugin author writes::

    from pydantic import BaseModel
    import taskrt

    class Email(BaseModel):
        to: str
        subject: str

    @taskrt.task("email.send", payload=Email, queue="mail", max_retries=5, timeout=30)
    def send_email(payload: Email, ctx: taskrt.TaskContext) -> None:
        ...

    @taskrt.hookimpl
    def register_task_handlers(register):
        register(send_email)
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from taskrt import limits
from taskrt.exceptions import ConfigurationError, PayloadValidationError, ValidationError

if TYPE_CHECKING:
    from taskrt.enqueue import EnqueueResult

TASK_NAME_RE = re.compile(limits.TASK_NAME_PATTERN)
QUEUE_NAME_RE = re.compile(limits.QUEUE_NAME_PATTERN)
MAX_TASK_NAME = limits.TASK_NAME_MAX

R = TypeVar("R")
HandlerFunc = Callable[..., Any]


class Enqueuer(Protocol):
    """Anything that creates tasks by name, such as :class:`taskrt.Client`: its
    ``enqueue(name, payload, **options)`` returns an :class:`~taskrt.enqueue.EnqueueResult`."""

    @property
    def enqueue(self) -> Callable[..., EnqueueResult]:
        """The method that creates a task of type ``name``."""


_default_enqueuer: Callable[[], Enqueuer] | None = None


def set_default_enqueuer(factory: Callable[[], Enqueuer]) -> None:
    """Name what :meth:`TaskType.enqueue` uses when it is given no client.

    The ``taskrt`` package sets it to the default :class:`~taskrt.client.Client` when it is
    imported, so this module, which the lower layers use, never imports the client.
    """
    global _default_enqueuer
    _default_enqueuer = factory


def check_task_name(name: str) -> str:
    """Return ``name`` if it is a valid dotted task name, else raise ValidationError."""
    if not isinstance(name, str) or len(name) > MAX_TASK_NAME or not TASK_NAME_RE.match(name):
        raise ValidationError(
            f"invalid task name {name!r}: use a dotted name of letters, digits, '_' and '-', "
            f"such as 'email.send' (at most {MAX_TASK_NAME} characters)",
            [{"loc": ["name"], "msg": "invalid task name"}],
        )
    return name


def check_queue_name(name: str) -> str:
    """Return ``name`` if it is a valid queue name, else raise ValidationError."""
    if not isinstance(name, str) or not QUEUE_NAME_RE.match(name):
        raise ValidationError(
            f"invalid queue name {name!r}: use 1 to 64 letters, digits, '_', '-' or '.'",
            [{"loc": ["queue"], "msg": "invalid queue name"}],
        )
    return name


def _errors_from_pydantic(
    exc: PydanticValidationError, prefix: tuple[str, ...]
) -> list[dict[str, Any]]:
    return [
        {"loc": [*prefix, *(str(p) for p in err["loc"])], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]


@dataclass(frozen=True, eq=False)
class TaskType(Generic[R]):
    """A declared task type: its name, handler and defaults. Created by :func:`task`."""

    name: str
    func: HandlerFunc
    payload_model: type[BaseModel] | None = None
    queue: str | None = None
    max_retries: int = 3
    retry: str = "exponential"
    retry_params: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    priority: int = 0
    description: str = ""
    is_async: bool = field(init=False)
    takes_context: bool = field(init=False)

    def __post_init__(self) -> None:
        check_task_name(self.name)
        if self.queue is not None:
            check_queue_name(self.queue)
        if self.max_retries < 0:
            raise ValueError(f"{self.name}: max_retries must be >= 0")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"{self.name}: timeout must be > 0 seconds")
        if self.payload_model is not None and not (
            isinstance(self.payload_model, type) and issubclass(self.payload_model, BaseModel)
        ):
            raise TypeError(f"{self.name}: payload must be a pydantic BaseModel subclass")
        params = [
            p
            for p in inspect.signature(self.func).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) not in (1, 2):
            raise TypeError(
                f"{self.name}: a handler takes (payload) or (payload, ctx), "
                f"{self.func.__qualname__} takes {len(params)} positional parameters"
            )
        object.__setattr__(self, "is_async", inspect.iscoroutinefunction(self.func))
        object.__setattr__(self, "takes_context", len(params) == 2)
        if not self.description:
            object.__setattr__(self, "description", inspect.getdoc(self.func) or "")

    # --- payloads ---------------------------------------------------------------------------
    def validate_payload(self, payload: Any) -> Any:
        """Check ``payload`` and return its JSON-ready form; raise PayloadValidationError if bad."""
        if self.payload_model is not None:
            try:
                if isinstance(payload, self.payload_model):
                    model = payload
                else:
                    model = self.payload_model.model_validate(
                        payload if payload is not None else {}
                    )
            except PydanticValidationError as exc:
                errors = _errors_from_pydantic(exc, ("payload",))
                detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
                raise PayloadValidationError(
                    f"payload for {self.name!r} is invalid: {detail}", errors
                ) from None
            return model.model_dump(mode="json")
        if isinstance(payload, BaseModel):
            return payload.model_dump(mode="json")
        try:
            json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise PayloadValidationError(
                f"payload for {self.name!r} is not JSON: {exc}",
                [{"loc": ["payload"], "msg": str(exc)}],
            ) from None
        return payload

    def load_payload(self, stored: Any) -> Any:
        """Turn a stored JSON payload into what the handler receives (a model, if declared)."""
        if self.payload_model is None:
            return stored
        return self.payload_model.model_validate(stored if stored is not None else {})

    # --- calling ----------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the handler function directly (handy in the plugin's own unit tests)."""
        return self.func(*args, **kwargs)

    def invoke(self, payload: Any, ctx: Any) -> Any | Awaitable[Any]:
        """Call the handler the way the worker does: with the loaded payload and the context."""
        if self.takes_context:
            return self.func(payload, ctx)
        return self.func(payload)

    def enqueue(
        self, payload: Any = None, *, client: Enqueuer | None = None, **options: Any
    ) -> EnqueueResult:
        """Enqueue a task of this type, through ``client`` or the default client from settings."""
        if client is None:
            if _default_enqueuer is None:
                raise ConfigurationError("no client given and no default client is set")
            client = _default_enqueuer()
        return client.enqueue(self.name, payload, **options)


def task(
    name: str,
    *,
    payload: type[BaseModel] | None = None,
    queue: str | None = None,
    max_retries: int = 3,
    retry: str = "exponential",
    retry_params: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    priority: int = 0,
    description: str = "",
) -> Callable[[HandlerFunc], TaskType[Any]]:
    """Declare a task type from a ``def`` or ``async def`` handler.

    ``name`` is the dotted task name (``email.send``); ``payload`` an optional pydantic model
    checked at enqueue time; ``queue`` the default queue; ``max_retries`` the retries after the
    first attempt; ``retry`` and ``retry_params`` the retry strategy; ``timeout`` the seconds a
    run may take; ``priority`` a number stored and reported with each task.
    """

    def decorate(func: HandlerFunc) -> TaskType[Any]:
        return TaskType(
            name=name,
            func=func,
            payload_model=payload,
            queue=queue,
            max_retries=max_retries,
            retry=retry,
            retry_params=dict(retry_params or {}),
            timeout=timeout,
            priority=priority,
            description=description,
        )

    return decorate
