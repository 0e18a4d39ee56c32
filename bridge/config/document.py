"""The config file as YAML nodes beside its data, so that every problem points at a line and column;
and the problem and error types that carry those positions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from .values import (
    SECRET_ENV_VARS,
)

# --- problems and errors -------------------------------------------------------------------------

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or suspicious) in the file, where it is and how to fix it."""

    path: str
    line: int | None  # 1-based; None when the file has no content to point at
    column: int | None
    where: str  # dotted key path, e.g. routes[0].match.lang
    message: str
    hint: str = ""

    def __str__(self) -> str:
        position = f"{self.path}:{self.line}:{self.column}" if self.line is not None else self.path
        where = f" {self.where}:" if self.where else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{position}:{where} {self.message}{hint}"


class ConfigError(Exception):
    """The config file is unusable; str() lists every problem, one per line."""

    def __init__(self, path: str, problems: list[str], details: list[Problem] | None = None) -> None:
        self.path = path
        self.problems = problems
        self.details = details or []
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        super().__init__(f"{path}: {count}\n" + "\n".join(problems))

    @classmethod
    def from_problems(cls, path: str, details: list[Problem]) -> ConfigError:
        return cls(path, [str(problem) for problem in details], details)


class ConfigUnreadable(ConfigError):
    """The file could not be read at all (missing, unreadable, not UTF-8)."""


# --- YAML with positions -------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader whose impossible dates (2026-13-01) stay text, so they get a located error."""


def _timestamp_or_text(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)

_SECRET_KEY = re.compile(r"token|secret|passw|api_?key|webhook_?key|signing", re.IGNORECASE)
_SECRET_VALUE = re.compile(r"\b(?:xox[a-z]|xapp)-[A-Za-z0-9]")
_SECRET_ENV_BY_CLUE = (
    (re.compile(r"signing", re.I), "SLACK_SIGNING_SECRET"),
    (re.compile(r"webhook|smartly", re.I), "SMARTLY_WEBHOOK_KEY"),
    (re.compile(r"repl", re.I), "BRIDGE_REPLY_SECRET"),
    (re.compile(r"xapp|app_?token", re.I), "SLACK_APP_TOKEN"),
    (re.compile(r"xox|bot|token", re.I), "SLACK_BOT_TOKEN"),
)


def _secret_hint(clue: str) -> str:
    """Name the environment variable this secret belongs in; the clue is a key name or a token prefix."""
    for pattern, variable in _SECRET_ENV_BY_CLUE:
        if pattern.search(clue):
            return f"remove it and set the environment variable {variable} instead"
    return "remove it and use the environment variables " + ", ".join(SECRET_ENV_VARS)


def _dotted(loc: Loc) -> str:
    text = ""
    for step in loc:
        if step == "[key]":
            continue
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _yaml_problem(path: str, error: yaml.YAMLError) -> Problem:
    """A syntax problem, described without the offending line's text (it might hold a secret)."""
    if not isinstance(error, yaml.MarkedYAMLError):
        return Problem(path, None, None, "", f"YAML syntax: {error}")
    mark = error.problem_mark or error.context_mark
    message = "; ".join(part for part in (error.context, error.problem) if part) or "invalid YAML"
    if isinstance(error, yaml.constructor.ConstructorError):
        hint = "only plain YAML is read: remove the !tag"
    elif "\\t" in message:
        hint = "indent with spaces, not tabs"
    else:
        hint = "check indentation, colons and quotes on this line and the one before"
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    return Problem(path, line, column, "", f"YAML: {message}", hint)


class _Document:
    """The YAML node tree next to the plain data, to turn a key path back into line:column."""

    def __init__(self, path: str, loader: _Loader, root: yaml.Node | None) -> None:
        self.path = path
        self.root = root
        self._loader = loader

    @classmethod
    def compose(cls, text: str, path: str) -> _Document:
        loader = _Loader(text)
        try:
            return cls(path, loader, loader.get_single_node())
        except yaml.YAMLError as e:
            raise ConfigError.from_problems(path, [_yaml_problem(path, e)]) from e
        finally:
            loader.dispose()

    def construct(self) -> Any:
        """Plain Python data; after compose() because merge keys (<<) rewrite the node tree."""
        if self.root is None:
            return None
        try:
            return self._loader.construct_document(self.root)
        except yaml.YAMLError as e:
            raise ConfigError.from_problems(self.path, [_yaml_problem(self.path, e)]) from e
        except (ValueError, TypeError) as e:  # e.g. `!!int abc`
            raise ConfigError.from_problems(
                self.path, [Problem(self.path, None, None, "", f"YAML value cannot be read: {e}")]
            ) from e

    def node_at(self, loc: Loc, *, key: bool = False) -> tuple[yaml.Node | None, int]:
        """(deepest node on `loc`, steps followed); the key's node when `key`; a missing key stops early."""
        node, key_node = self.root, None
        for depth, step in enumerate(loc):
            if step == "[key]":
                return key_node or node, depth + 1
            if isinstance(node, yaml.MappingNode):
                pair = next(
                    (
                        (k, v)
                        for k, v in reversed(node.value)  # YAML keeps the last of duplicated keys
                        if isinstance(k, yaml.ScalarNode) and k.value == str(step)
                    ),
                    None,
                )
                if pair is None:
                    return node, depth
                key_node, node = pair
            elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
                key_node, node = None, node.value[step]
            else:
                return node, depth
        return (key_node if key and key_node is not None else node), len(loc)

    def problem(self, loc: Loc, message: str, hint: str = "", *, key: bool = False) -> Problem:
        node, followed = self.node_at(loc, key=key)
        if all(isinstance(step, int) for step in loc[followed:]):
            loc = loc[:followed]  # `lang: fr-*` was read as [fr-*]: do not show the author an index
        mark = node.start_mark if node is not None else None
        return Problem(
            self.path,
            mark.line + 1 if mark else None,
            mark.column + 1 if mark else None,
            _dotted(loc),
            message,
            hint,
        )

    def walk(self) -> list[tuple[Loc, yaml.Node | None, yaml.Node]]:
        """Every (key path, key node, value node) once, even through aliases and recursive anchors."""
        found: list[tuple[Loc, yaml.Node | None, yaml.Node]] = []
        seen: set[int] = set()
        pending: list[tuple[Loc, yaml.Node]] = [((), self.root)] if self.root is not None else []
        while pending:
            loc, node = pending.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, yaml.MappingNode):
                children = [
                    ((*loc, k.value if isinstance(k, yaml.ScalarNode) else "?"), k, v) for k, v in node.value
                ]
            elif isinstance(node, yaml.SequenceNode):
                children = [((*loc, index), None, v) for index, v in enumerate(node.value)]
            else:
                continue
            found.extend(children)
            pending.extend((child_loc, value) for child_loc, _, value in reversed(children))
        return found

    def duplicate_keys(self) -> list[Problem]:
        """PyYAML silently keeps the last of two equal keys; the author of the first deserves to know."""
        problems = []
        for loc, _, mapping in [((), None, self.root), *self.walk()]:
            if not isinstance(mapping, yaml.MappingNode):
                continue
            first_line: dict[str, int] = {}
            for key_node, _ in mapping.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                    continue
                if key_node.value in first_line:
                    problems.append(
                        self.problem(
                            (*loc, key_node.value),
                            f"key given twice (first on line {first_line[key_node.value]}); "
                            "YAML keeps only the last",
                            key=True,
                        )
                    )
                first_line.setdefault(key_node.value, key_node.start_mark.line + 1)
        return problems

    def secrets(self) -> tuple[list[Problem], list[Loc], list[str]]:
        """Things that look like credentials: (problems, their key paths, values to never echo)."""
        problems: list[Problem] = []
        locs: list[Loc] = []
        values: list[str] = []
        for loc, key_node, value_node in self.walk():
            if isinstance(key_node, yaml.ScalarNode) and (
                _SECRET_KEY.search(key_node.value) or _SECRET_VALUE.search(key_node.value)
            ):
                problems.append(
                    self.problem(
                        loc,
                        "this key looks like it holds a secret; secrets do not belong in the config file",
                        _secret_hint(key_node.value),
                        key=True,
                    )
                )
            elif isinstance(value_node, yaml.ScalarNode) and _SECRET_VALUE.search(value_node.value):
                problems.append(
                    self.problem(
                        loc,
                        "this value looks like a Slack token; secrets do not belong in the config file",
                        _secret_hint(value_node.value[:5]),
                    )
                )
            else:
                continue
            locs.append(loc)
            if isinstance(value_node, yaml.ScalarNode) and value_node.value:
                values.append(value_node.value)
        return problems, locs, values
