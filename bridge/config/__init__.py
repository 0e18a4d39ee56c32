"""config.yaml: the owner's rules and tuning, loaded into pydantic models.

Secrets never live here (environment only, see settings.py). Durations are written like 90s, 30m,
24h, 7d in YAML and held as float seconds in attributes suffixed `_s`.

A mistake in this file must be easy to fix and must never take a running bridge down, so loading
collects *every* problem (YAML syntax, duplicate keys, schema, secrets), each with its line, column
and a hint, and raises them together in one ConfigError (diagnostics.py, document.py). Value parsers
live in values.py, the models in schema.py, and `bridge check-config` in check.py.
"""

from .check import check_config_main, summarize
from .diagnostics import load_config, parse_config
from .document import ConfigError, ConfigUnreadable, Problem
from .schema import (
    ALWAYS_OPEN,
    BusinessHours,
    DeliverySection,
    FileConfig,
    HandoverSection,
    HistorySection,
    OutsideHours,
    RedisSection,
    RepliesSection,
    Route,
    RouteMatch,
    SlackSection,
    SlaSection,
    Trigger,
    WebhookSection,
)
from .values import (
    CONFIG_PATH_ENV,
    DAYS,
    DEFAULT_CONFIG_PATH,
    Duration,
    Invalid,
    format_duration,
    format_minutes,
    parse_channel_pool,
    parse_duration,
)

__all__ = [
    "ALWAYS_OPEN",
    "CONFIG_PATH_ENV",
    "DAYS",
    "DEFAULT_CONFIG_PATH",
    "BusinessHours",
    "ConfigError",
    "ConfigUnreadable",
    "DeliverySection",
    "Duration",
    "FileConfig",
    "HandoverSection",
    "HistorySection",
    "Invalid",
    "OutsideHours",
    "Problem",
    "RedisSection",
    "RepliesSection",
    "Route",
    "RouteMatch",
    "SlaSection",
    "SlackSection",
    "Trigger",
    "WebhookSection",
    "check_config_main",
    "format_duration",
    "format_minutes",
    "load_config",
    "parse_channel_pool",
    "parse_config",
    "parse_duration",
    "summarize",
]
