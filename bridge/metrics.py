"""Prometheus metrics, one registry per app (so tests and several apps in one process never clash)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
RESPONSE_BUCKETS_S = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._define_flow(self.registry)
        self._define_slack(self.registry)
        self._define_desk(self.registry)
        self._webhook_children: dict[tuple[str, str], Any] = {}

    def _define_flow(self, r: CollectorRegistry) -> None:
        """Webhooks in, handovers, outboxes and what reaches the owner."""
        self.webhook_events = Counter(
            "bridge_webhook_events_total",
            "Smartly webhook events by outcome",
            ["event", "outcome"],
            registry=r,
        )
        self.handovers_opened = Counter(
            "bridge_handovers_opened_total", "Handovers opened", ["trigger", "route"], registry=r
        )
        self.handovers_open = Gauge("bridge_handovers_open", "Handovers currently open", registry=r)
        self.slack_requests = Counter(
            "bridge_slack_requests_total", "Slack Web API calls", ["method", "outcome"], registry=r
        )
        self.slack_delivery = Histogram(
            "bridge_slack_delivery_seconds",
            "From webhook received to visible in Slack",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.outbox_pending = Gauge(
            "bridge_outbox_pending", "Outbox entries waiting for delivery", ["lane"], registry=r
        )
        self.dead_letters = Counter(
            "bridge_dead_letters_total",
            "Entries moved to the dead-letter stream",
            ["lane", "reason"],
            registry=r,
        )
        self.agent_first_response = Histogram(
            "bridge_agent_first_response_seconds",
            "From handover opened to the first agent reply",
            buckets=RESPONSE_BUCKETS_S,
            registry=r,
        )
        self.reply_requests = Counter(
            "bridge_reply_requests_total",
            "POSTs to the owner's reply endpoint",
            ["type", "outcome"],
            registry=r,
        )
        self.redis_errors = Counter(
            "bridge_redis_errors_total", "Redis commands that failed", ["where"], registry=r
        )

    def _define_slack(self, r: CollectorRegistry) -> None:
        """Slack: calls, events, channels and the token."""
        self.slack_events = Counter(
            "bridge_slack_events_total",
            "Slack events and interactions by outcome",
            ["kind", "outcome"],
            registry=r,
        )
        self.slack_channel_usable = Gauge(
            "bridge_slack_channel_usable",
            "1 when the bot can post in a configured channel (conversations.info), 0 when not",
            ["channel"],
            registry=r,
        )
        self.slack_channel_lag = Gauge(
            "bridge_slack_channel_lag_seconds",
            "Age of the oldest line waiting to be posted in the channel",
            ["channel"],
            registry=r,
        )
        self.slack_channel_open = Gauge(
            "bridge_slack_channel_open_handovers", "Open handovers in the channel", ["channel"], registry=r
        )
        self.slack_auth_ok = Gauge(
            "bridge_slack_auth_ok", "0 while Slack refuses the bot token (delivery paused)", registry=r
        )

    def _define_desk(self, r: CollectorRegistry) -> None:
        """The desk (bridge/desk): numbers for the team lead."""
        self.handover_first_response = Histogram(
            "bridge_handover_first_response_seconds",
            "From handover opened to the first relayed agent reply, per route",
            ["route"],
            buckets=RESPONSE_BUCKETS_S,
            registry=r,
        )
        self.handover_resolution = Histogram(
            "bridge_handover_resolution_seconds",
            "From handover opened to resolved, per route and outcome",
            ["route", "outcome"],
            buckets=RESPONSE_BUCKETS_S,
            registry=r,
        )
        self.handovers_waiting = Gauge(
            "bridge_handovers_waiting",
            "Open handovers without an agent reply yet (read from Redis: every replica agrees)",
            ["route"],
            registry=r,
        )
        self.sla_breaches = Counter(
            "bridge_sla_breaches_total", "Handovers that missed escalate_after", ["route"], registry=r
        )

    def webhook_event(self, event: str, outcome: str) -> None:
        """Count one webhook; the labelled child is looked up once (labels() costs more than inc())."""
        child = self._webhook_children.get((event, outcome))
        if child is None:
            child = self._webhook_children[(event, outcome)] = self.webhook_events.labels(event, outcome)
        child.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
