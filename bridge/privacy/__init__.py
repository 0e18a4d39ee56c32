"""Privacy controls (issue 18): redaction before Slack; see redact.py."""

from .redact import BUILTINS, Redactor, activate, active, conversation_label, redact

__all__ = ["BUILTINS", "Redactor", "activate", "active", "conversation_label", "redact"]
