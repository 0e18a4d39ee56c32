"""Redaction of personal data before text reaches Slack (privacy.redact in config.yaml).

Every piece of text the bridge sends to Slack — roots, opening history, live lines, notes, transcript
files, Home tab excerpts, anything added later — MUST go through `redact()` (slack_format.py does it
for what it renders: render new Slack-bound text there, or call `redact()` yourself). The reply
endpoint is not Slack: it still receives what agents typed, unredacted.

Detectors run most specific first, whatever the order of the config list: custom patterns, then
`card` and `iban`, then `email` and `phone`. Each replaces its matches with a placeholder (`[card]`,
`[order_id]`, …) before the next runs, so a valid card number reads `[card]`, never `[phone]`.

Matching time is bounded: custom patterns run on the third-party `regex` module with a timeout (the
standard `re` has none). A detector that times out cannot say where its matches are, so the whole
text becomes its placeholder (nothing leaks, and the bridge carries on); the event is logged without
the text. The built-ins are linear by construction and run on `re` without one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import regex
import structlog

log = structlog.get_logger("bridge.privacy")

BUILTINS = ("email", "phone", "card", "iban")
# The longest one detector may spend on one text; a pathological custom pattern costs this, not a stall.
MATCH_TIMEOUT_S = 0.05
# Custom patterns first, then card and iban, then email and phone (see the module docstring).
_RANK = {"card": 1, "iban": 1, "email": 2, "phone": 2}


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(char for char in text if char.isdigit())


def _card(candidate: str) -> bool:
    digits = _digits(candidate)
    return 13 <= len(digits) <= 19 and _luhn(digits)


def _iban(candidate: str) -> bool:
    compact = candidate.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rotated = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rotated)  # A=10 … Z=35 (ISO 13616)
    return int(number) % 97 == 1


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _phone(candidate: str) -> bool:
    digits = _digits(candidate)
    return 8 <= len(digits) <= 15 and not _ISO_DATE.fullmatch(candidate.strip())


# Every built-in starts only where a run starts (lookbehind) and uses possessive repeats: linear time
# (tests/test_privacy_redact.py times them on adversarial input), so they run on the standard `re`
# (faster on short texts) without the timeout custom patterns need, and only on texts that hold
# what they look for (an "@", a digit).
_BUILTIN_PATTERNS: dict[str, tuple[str, Callable[[str], bool] | None]] = {
    "email": (r"(?<![\w.%+-])[\w.%+-]++@(?:[A-Za-z0-9-]++\.)++[A-Za-z]{2,}+(?![\w-])", None),
    "card": (r"(?<![\d-])\d(?:[ -]?+\d){12,18}+(?![\d])", _card),
    "iban": (
        r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?: ?+[A-Za-z0-9]{4}){2,7}+(?: ?+[A-Za-z0-9]{1,3})?+"
        r"(?![A-Za-z0-9])",
        _iban,
    ),
    # International (+33 6 12 34 56 78, 0033…), national (06 12 34 56 78, (555) 123-4567, 555.123.4567).
    "phone": (
        r"(?<![\w+()])(?:\+|\b|(?=\())(?:\(\d{1,4}\)|\d)(?:[ .\-/]?+(?:\(\d{1,4}\)|\d)){5,}+(?![\w])",
        _phone,
    ),
}


_NEEDS = {"email": "@", "card": "digit", "iban": "digit", "phone": "digit"}
_DIGIT = re.compile(r"\d")


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    pattern: Any  # regex.Pattern (custom: matched with a timeout) or re.Pattern (built-ins: faster)
    valid: Callable[[str], bool] | None = None
    timeout_s: float | None = MATCH_TIMEOUT_S  # None: linear by construction (the built-ins)
    needs: str = ""  # "@" or "digit": skipped on a text without one

    @property
    def placeholder(self) -> str:
        return f"[{self.name}]"

    def apply(self, text: str) -> str:
        def replace(match: Any) -> str:
            found = match.group(0)
            return self.placeholder if self.valid is None or self.valid(found) else found

        if self.timeout_s is None:
            return str(self.pattern.sub(replace, text))
        try:
            return str(self.pattern.sub(replace, text, timeout=self.timeout_s))
        except TimeoutError:
            log.warning("redaction_timeout", detector=self.name, chars=len(text), timeout_s=MATCH_TIMEOUT_S)
            return self.placeholder


def compile_pattern(pattern: str) -> regex.Pattern[str]:
    """A custom detector's pattern; raises regex.error (with .pos) when it is not a valid one."""
    return regex.compile(pattern, regex.VERSION0)


class Redactor:
    """The configured detectors, most specific first."""

    def __init__(self, builtins: Sequence[str] = (), custom: Sequence[tuple[str, str]] = ()) -> None:
        detectors = [Detector(name, compile_pattern(pattern)) for name, pattern in custom]
        for name in sorted(set(builtins), key=lambda n: (_RANK[n], BUILTINS.index(n))):
            pattern, valid = _BUILTIN_PATTERNS[name]
            detectors.append(Detector(name, re.compile(pattern), valid, None, _NEEDS[name]))
        self.detectors = tuple(detectors)

    def __bool__(self) -> bool:
        return bool(self.detectors)

    def redact(self, text: str) -> str:
        digit: bool | None = None  # looked for once, when a detector first needs to know
        for detector in self.detectors:
            if not text:
                break
            if detector.needs == "@" and "@" not in text:
                continue
            if detector.needs == "digit":
                if digit is None:
                    digit = _DIGIT.search(text) is not None
                if not digit:
                    continue
            text = detector.apply(text)
        return text


NOTHING = Redactor()
_active: Redactor = NOTHING


def activate(redactor: Redactor) -> None:
    """The running config's detectors (set whenever the config loads or reloads)."""
    global _active
    _active = redactor


def active() -> Redactor:
    return _active


def conversation_label(cid: str) -> str:
    """The conversation id as Slack may store it (message metadata): itself, or while redaction is on
    a pseudonym (its client id is often a phone number or an email). Stable, so what the bridge
    looks for again (slack_api.find_marked) matches what it posted."""
    if not _active.detectors:
        return cid
    return "h" + hashlib.sha256(cid.encode()).hexdigest()[:24]


def redact(text: str) -> str:
    """Text bound for Slack, with every configured detector's matches replaced by its placeholder."""
    return _active.redact(text) if _active.detectors and text else text
