"""Privacy controls (issue 18): redaction before Slack; see redact.py."""

from .redact import BUILTINS, Redactor, activate, active, redact

__all__ = ["BUILTINS", "Redactor", "activate", "active", "redact"]
