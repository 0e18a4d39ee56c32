"""Loading config.yaml so that a mistake is easy to fix: every problem (YAML syntax, duplicate keys,
schema, secrets) collected with its line, column and a hint, and raised together in one ConfigError."""

from __future__ import annotations

import difflib
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)

from ..matching import glob_matches
from .document import ConfigError, ConfigUnreadable, Loc, Problem, _Document
from .schema import FileConfig
from .values import (
    _ONCE_HINT,
    DEFAULT_CONFIG_PATH,
    Invalid,
    _days_given_twice,
    _kind_of,
    _Repeated,
)

# --- validation errors, explained ----------------------------------------------------------------

_TYPE_HINTS = {
    "bool_type": "write true or false",
    "bool_parsing": "write true or false",
    "int_type": "write a whole number, without quotes",
    "int_parsing": "write a whole number, without quotes",
    "int_from_float": "write a whole number, without quotes",
    "float_type": "write a number, like 0.3",
    "float_parsing": "write a number, like 0.3",
    "string_type": "write text; quote it if YAML would read it as a number, a date or true/false",
    "list_type": "write a list: [a, b], or one '- item' per line",
    "tuple_type": "write a list: [a, b], or one '- item' per line",
    "dict_type": "write a mapping: one 'key: value' per line, indented under this key",
    "date_type": "write dates as YYYY-MM-DD",
    "date_parsing": "write dates as YYYY-MM-DD",
    "date_from_datetime_parsing": "write dates as YYYY-MM-DD",
    "date_from_datetime_inexact": "write dates as YYYY-MM-DD, without a time",
}


def _unwrap(annotation: Any) -> Any:
    """Annotated[X, ...] and X | None → X, to walk the schema the way the YAML nests."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that validates the value at `loc`, if that value is a mapping of known keys."""
    current: Any = FileConfig
    for step in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next(
                (info for name, info in current.model_fields.items() if step in (name, info.alias)),
                None,
            )
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) in (list, tuple) and isinstance(step, int):
            current = get_args(current)[0]
        elif get_origin(current) is dict and step != "[key]":
            current = get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _yaml_keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _explain(error: Any) -> tuple[str, str, bool]:
    """(message, hint, points at the key) for one pydantic error, without echoing the input."""
    loc: Loc = tuple(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, Invalid):
        return str(cause), cause.hint, False
    if isinstance(cause, Exception):
        return str(cause), "", False
    kind = error["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        allowed = _yaml_keys(model) if model else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = (f"did you mean {close[0]}? " if close else "") + ("valid keys here: " + ", ".join(allowed))
        return f"unknown key {loc[-1]!r}", hint, True
    if kind == "missing":
        return f"required key {loc[-1]!r} is missing", "", False
    if kind in ("model_type", "model_attributes_type"):
        model = _model_at(loc)
        shown = str(getattr(model, "example", "")) if model else ""
        example = f", like {shown}" if shown else ""
        return f"expected a mapping, got {_kind_of(error.get('input'))}", f"write a mapping{example}", False
    return error["msg"], _TYPE_HINTS.get(kind, ""), False


def _repeated_entries(document: _Document, data: dict[str, Any]) -> list[Problem]:
    """Repeated route names and days, checked on the raw data so they show up next to every other
    problem (a model validator would only run once everything else in its model is valid)."""
    routes: list[Any] = data["routes"] if isinstance(data.get("routes"), list) else []
    problems = []
    first_index: dict[str, int] = {}
    for index, route in enumerate(routes):
        name = route.get("name") if isinstance(route, dict) else None
        if isinstance(name, str) and name in first_index:
            problems.append(
                document.problem(
                    ("routes", index, "name"),
                    f"route name {name!r} is already used by routes[{first_index[name]}]",
                    "give each route its own name: logs and metrics tell routes apart by name",
                )
            )
        if isinstance(name, str):
            first_index.setdefault(name, index)
    hours_by_loc: list[tuple[Loc, Any]] = [(("business_hours",), data.get("business_hours"))]
    hours_by_loc += [
        (("routes", index, "business_hours"), route.get("business_hours"))
        for index, route in enumerate(routes)
        if isinstance(route, dict)
    ]
    for loc, hours in hours_by_loc:
        weekly = hours.get("weekly") if isinstance(hours, dict) else None
        if isinstance(weekly, dict):
            problems += [
                document.problem((*loc, "weekly", span, "[key]"), message, _ONCE_HINT)
                for span, message in _days_given_twice(weekly)
            ]
    return problems


def _redact(problem: Problem, secret_values: list[str]) -> Problem:
    """Secrets must not reach a terminal or a log, even inside another problem's message."""
    where, message = problem.where, problem.message
    for value in secret_values:
        where, message = where.replace(value, "<redacted>"), message.replace(value, "<redacted>")
    return Problem(problem.path, problem.line, problem.column, where, message, problem.hint)


def _within(loc: Loc, prefixes: list[Loc]) -> bool:
    return any(loc[: len(prefix)] == prefix for prefix in prefixes)


def _config_warnings(config: FileConfig, document: _Document) -> list[Problem]:
    """Valid but surely not what the author meant; check-config shows these, loading ignores them."""
    warnings = []
    if not config.handover.triggers:
        warnings.append(document.problem(("handover", "triggers"), "no triggers: no handover will ever open"))
    configured = {trigger.name for trigger in config.handover.triggers}
    catch_all: str | None = None
    for index, route in enumerate(config.routes):
        if catch_all is not None:
            warnings.append(
                document.problem(
                    ("routes", index),
                    f"route {route.name!r} never matches: route {catch_all!r} before it matches every event",
                    "routes are tried in order; move the catch-all route last",
                )
            )
        if route.match.trigger and not any(glob_matches(route.match.trigger, name) for name in configured):
            warnings.append(
                document.problem(
                    ("routes", index, "match", "trigger"),
                    f"route {route.name!r} matches a trigger that handover.triggers does not configure",
                    "configured triggers: " + (", ".join(sorted(configured)) or "none"),
                )
            )
        if not route.match.criteria and catch_all is None:
            catch_all = route.name
    return warnings


def _schema_problems(
    document: _Document, data: Any, skip: list[Loc]
) -> tuple[FileConfig | None, list[Problem]]:
    if not isinstance(data, dict):
        found = _kind_of(data)
        return None, [
            document.problem((), f"the file must be a mapping of sections, got {found}", "start with slack:")
        ]
    problems = _repeated_entries(document, data)
    try:
        return FileConfig.model_validate(data), problems
    except ValidationError as e:
        for error in e.errors():
            loc = tuple(error["loc"])
            if _within(loc, skip):
                continue  # already reported as a secret: better say nothing more about it
            if isinstance((error.get("ctx") or {}).get("error"), _Repeated):
                continue  # already reported by _repeated_entries, with a better position
            message, hint, at_key = _explain(error)
            problems.append(document.problem(loc, message, hint, key=at_key))
        return None, problems


def _parse(text: str, path: str) -> tuple[FileConfig, list[Problem]]:
    """(config, warnings), or ConfigError listing every problem in file order."""
    document = _Document.compose(text, path)
    secret_problems, secret_locs, secret_values = document.secrets()
    problems = document.duplicate_keys() + secret_problems
    try:
        data = document.construct()
    except ConfigError as e:
        problems += e.details
        data = None
    else:
        config, schema_problems = _schema_problems(document, {} if data is None else data, secret_locs)
        problems += schema_problems
    if problems or config is None:
        ordered = sorted(problems, key=lambda problem: (problem.line or 0, problem.column or 0))
        raise ConfigError.from_problems(path, [_redact(problem, secret_values) for problem in ordered])
    return config, _config_warnings(config, document)


def _decode(source: bytes, path: str) -> str:
    try:
        return source.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigUnreadable.from_problems(
            path,
            [Problem(path, None, None, "", f"not UTF-8 text (byte {e.start})", "save the file as UTF-8")],
        ) from e


def parse_config(source: str | bytes, path: str = DEFAULT_CONFIG_PATH) -> FileConfig:
    """Validate config text; `path` only names the file in messages."""
    text = _decode(source, path) if isinstance(source, bytes) else source
    return _parse(text, path)[0]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConfigUnreadable.from_problems(
            path, [Problem(path, None, None, "", f"cannot read the config file: {reason}")]
        ) from e


def _load(path: str) -> tuple[FileConfig, list[Problem]]:
    return _parse(_decode(_read(path), path), path)


def load_config(path: str | Path | None) -> FileConfig:
    """Read and validate a config file; a missing path means all defaults."""
    if path is None:
        return FileConfig()
    return _load(str(path))[0]
