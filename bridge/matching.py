"""Matching as the rules do it: case-insensitive globs and word-normalised text. Shared by the rules
(at every webhook) and the config (checked at load), so both read a pattern the same way."""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from functools import lru_cache

_WORD = re.compile(r"\w+")


@lru_cache(maxsize=4096)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """fnmatch-style and case-insensitive: 'FR-fr' and 'fr-FR' are the same language to a human."""
    return re.compile(fnmatch.translate(pattern), re.IGNORECASE | re.DOTALL)


def glob_matches(patterns: list[str], value: str) -> bool:
    return any(compile_glob(pattern).match(value) for pattern in patterns)


def normalize_words(text: str) -> str:
    """Casefold, strip accents and punctuation, one space between words: 'Conseillère !' → 'conseillere'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return " ".join(_WORD.findall(bare))
