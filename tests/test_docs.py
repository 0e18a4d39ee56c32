"""Issue 15 item 8: the docs belong to the project. Nothing points outside the repository, every
relative link resolves, the architecture is linked from the README, and config.yaml and the README
say the same about long texts (and both match the code)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from bridge.config import DeliverySection
from bridge.slack_format import MAX_LINE_CHARS

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
OUTSIDE = re.compile(r"shared/DESIGN|/work/|\.\./\.\./")


def text_files() -> list[Path]:
    roots = ["README.md", "config.yaml", "Dockerfile", "docker-compose.yml", "Makefile", "bridge.env.example"]
    files = [REPO / name for name in roots]
    for folder in ("docs", "examples", "deploy", "bridge"):
        files += [p for p in (REPO / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return files


@pytest.mark.parametrize("path", text_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_nothing_refers_to_a_path_outside_the_repository(path: Path) -> None:
    found = OUTSIDE.findall(path.read_text(errors="replace"))
    assert not found, f"{path.relative_to(REPO)} refers outside the repository: {found}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc: Path) -> None:
    for target in LINK.findall(doc.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (doc.parent / target).exists(), f"{doc.name} links {target}, which does not exist"


def test_the_architecture_is_linked_from_the_readme_and_covers_what_it_must() -> None:
    assert "](docs/architecture.md)" in (REPO / "README.md").read_text()
    architecture = (REPO / "docs" / "architecture.md").read_text()
    for heading in ("## Data flow", "## Redis keys", "## Ordering", "## Crash safety"):
        assert heading in architecture


def test_config_yaml_and_readme_agree_on_long_texts() -> None:
    """Both say: lines are coalesced into posts of at most max_message_chars, and one text longer than
    MAX_LINE_CHARS is cut there; with the code's own numbers."""
    default = DeliverySection().max_message_chars
    readme_row = next(
        line
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("| `delivery.max_message_chars`")
    )
    for text in (
        readme_row,
        (REPO / "config.yaml").read_text(),
        (REPO / "examples" / "config.full.yaml").read_text(),
    ):
        assert str(default) in text
        assert f"longer than {MAX_LINE_CHARS} is cut there with …" in text
        assert "coalesced into posts of at most" in text
    assert "split into several messages" not in (REPO / "config.yaml").read_text()  # the old, wrong claim


def test_every_log_event_is_snake_case() -> None:
    """Log lines are events with fields, not sentences: `config_reloaded`, never "config reloaded"."""
    levels = {"debug", "info", "warning", "error", "exception", "critical", "msg"}
    bad = []
    for path in (REPO / "bridge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in levels or not node.args:
                continue
            first = node.args[0]
            is_text = isinstance(first, ast.Constant) and isinstance(first.value, str)
            if is_text and not re.fullmatch(r"[a-z][a-z0-9_]*", first.value):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}: {first.value!r}")
    assert not bad, bad
