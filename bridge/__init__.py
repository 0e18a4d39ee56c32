"""Smartly.ai → Slack handover bridge."""

__version__ = "0.1.0"
