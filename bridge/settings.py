"""Environment settings (secrets and deployment wiring) merged with config.yaml into one AppConfig.

Secrets live only here, as SecretStr, so that a stray repr or log line prints `**********`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .config import FileConfig, load_config, parse_channel_pool
from .config.check import check_env_channel
from .file_links import FileLinks
from .http_body import BODY_TIMEOUT_S


class Settings(BaseSettings):
    """Every environment variable the bridge reads; names are part of the public contract."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    bridge_host: str = "0.0.0.0"
    bridge_port: int = 8080
    bridge_config: str | None = None
    bridge_data_dir: Path = Path(".bridge-data")
    bridge_log_level: str = "info"
    bridge_metrics_token: SecretStr | None = None
    bridge_admin_token: SecretStr | None = None  # enables /admin/... (Bearer); unset: they answer 404
    bridge_instance: str | None = None
    bridge_body_timeout_s: float = Field(BODY_TIMEOUT_S, gt=0)  # a request body's time to arrive, else 408

    redis_url: str | None = None
    redis_cluster: bool | None = None

    smartly_webhook_key: SecretStr | None = None

    slack_bot_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_channel: str | None = None  # one channel ID or a comma-separated pool; see AppConfig.env_pool
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None

    bridge_reply_url: str | None = None
    bridge_reply_secret: SecretStr | None = None
    bridge_public_url: str | None = None  # where the user's side reaches /files/<token> (file links)


class SettingsError(Exception):
    """A required setting is missing or unusable: reported as one line, never a traceback."""


@dataclass(frozen=True)
class AppConfig:
    """What the running bridge needs: environment settings plus the validated file."""

    settings: Settings
    file: FileConfig
    config_path: str | None

    @cached_property
    def env_pool(self) -> tuple[str, ...]:
        """SLACK_CHANNEL as a pool (empty when unset); SettingsError, in one line, for a bad ID."""
        raw = self.settings.slack_channel
        problem = check_env_channel(raw)
        if problem:
            raise SettingsError(problem)
        return parse_channel_pool(raw) if raw and raw.strip() else ()

    @property
    def default_pool(self) -> tuple[str, ...]:
        """The effective default channel pool now (one ID, or several); () when none is set."""
        return self.default_pool_in(self.file)

    @property
    def default_pool_source(self) -> str:
        """Where default_pool comes from: SLACK_CHANNEL, slack.default_channel, or unset."""
        if self.env_pool:
            return "SLACK_CHANNEL"
        return "slack.default_channel" if self.file.slack.default_channel else "unset"

    def default_pool_in(self, file: FileConfig) -> tuple[str, ...]:
        """SLACK_CHANNEL wins over the file's default channel (which a hot reload may change)."""
        return self.env_pool or file.slack.default_channel or ()

    def channels_in(self, file: FileConfig) -> list[str]:
        """Every channel the bridge may post to under `file`: the default (SLACK_CHANNEL wins) first."""
        return list(dict.fromkeys((*self.default_pool_in(file), *file.channel_ids())))

    @cached_property
    def webhook_keys(self) -> tuple[bytes, ...]:
        """Parsed once: checked on every webhook."""
        raw = (
            self.settings.smartly_webhook_key.get_secret_value() if self.settings.smartly_webhook_key else ""
        )
        return tuple(k.strip().encode() for k in raw.split(",") if k.strip())

    @property
    def redis_cluster(self) -> bool:
        if self.settings.redis_cluster is not None:
            return self.settings.redis_cluster
        return self.file.redis.cluster

    @property
    def replies_enabled(self) -> bool:
        return bool(self.settings.bridge_reply_url)

    @cached_property
    def file_links(self) -> FileLinks | None:
        """Links to files agents share: with a reply endpoint (whose secret keys them) and a public URL."""
        s = self.settings
        if not (self.replies_enabled and s.bridge_reply_secret and s.bridge_public_url):
            return None
        return FileLinks.create(s.bridge_reply_secret.get_secret_value(), s.bridge_public_url)

    def secrets(self) -> list[str]:
        """Every secret value in force, so logs and error bodies can be scrubbed of them."""
        s = self.settings
        values = [k.decode() for k in self.webhook_keys]
        for secret in (
            s.slack_bot_token,
            s.slack_signing_secret,
            s.slack_app_token,
            s.bridge_reply_secret,
            s.bridge_metrics_token,
            s.bridge_admin_token,
            s.smartly_webhook_key,
        ):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        return [v for v in values if len(v) >= 4]


def default_config_path(explicit: str | None = None) -> str | None:
    """--config, else $BRIDGE_CONFIG, else ./config.yaml when it exists (else built-in defaults)."""
    if explicit:
        return explicit
    env = os.environ.get("BRIDGE_CONFIG")
    if env:
        return env
    return "config.yaml" if Path("config.yaml").exists() else None


def load_app_config(config_path: str | None = None, *, require: bool = True) -> AppConfig:
    """Read env + file; with `require`, refuse to start without the settings a bridge cannot run without."""
    settings = Settings()
    path = default_config_path(config_path or settings.bridge_config)
    file = load_config(path)
    app_config = AppConfig(settings=settings, file=file, config_path=path)
    if require:
        if not app_config.webhook_keys:
            raise SettingsError(
                "missing setting SMARTLY_WEBHOOK_KEY (the ?key= secret of the Smartly webhook URL)"
            )
        if not settings.slack_bot_token or not settings.slack_bot_token.get_secret_value():
            raise SettingsError("missing setting SLACK_BOT_TOKEN (the Slack bot token, xoxb-...)")
        if not app_config.default_pool:  # (env_pool raises SettingsError for a bad SLACK_CHANNEL)
            raise SettingsError(
                "missing setting SLACK_CHANNEL (or slack.default_channel in config.yaml): "
                "the channel ID where handover threads open"
            )
        if settings.bridge_reply_url and not settings.bridge_reply_secret:
            raise SettingsError("missing setting BRIDGE_REPLY_SECRET (required when BRIDGE_REPLY_URL is set)")
        public = settings.bridge_public_url
        if public and not public.lower().startswith(("https://", "http://")):
            raise SettingsError(
                "BRIDGE_PUBLIC_URL must be the bridge's public base URL, e.g. https://bridge.example.com"
            )
    return app_config
