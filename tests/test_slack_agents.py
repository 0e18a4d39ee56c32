"""Issue 14 items 4 and 5 through the real endpoints (/smartly/hooks, /slack/events, /slack/interactions,
/metrics), a real valkey-server, the strict fake Slack and the fake reply endpoint: channels the bridge
cannot use are found at start and after a reload; who may act (slack.agents, Slack Connect); what agents
are told privately (chat.postEphemeral); app_rate_limited."""

from __future__ import annotations

import io
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
from structlog.testing import capture_logs

from bridge.config import check_config_main
from bridge.keys import usergroup_key
from bridge.notices import TAKE_OVER_ACTION
from bridge.runtime import BRIDGE
from tests.harness import wait_until
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, BridgeClient, block_action, thread_reply_event
from tests.test_agents import ALICE, BOB, click, of_type, open_handover, reply, root_text, texts

CAROL = "UAGENT03"  # in the user group S0AGENTS only
GROUP = "S0AGENTS"


def take_over(root_ts: str, user: str = BOB) -> bytes:
    """The click on the ephemeral's button: Slack sends the ephemeral's container, the root in `value`."""
    form = urllib.parse.parse_qs(block_action(CHANNEL, root_ts, TAKE_OVER_ACTION, user=user).decode())
    payload = orjson.loads(form["payload"][0])
    payload["container"] = {"type": "message", "message_ts": "1700000001.000001", "is_ephemeral": True}
    payload.pop("message")
    payload["actions"][0]["value"] = root_ts
    return urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()


def ephemerals_to(fake_slack: FakeSlack, user: str) -> list[dict[str, Any]]:
    return [e for e in fake_slack.ephemerals if e["user"] == user]


async def metrics_text(bridge: BridgeClient) -> str:
    response = await bridge.client.get("/metrics")
    return (await response.read()).decode()


# -- Claim on someone else's handover; clicks that change nothing ---------------------------------------


async def test_claim_on_a_claimed_handover_offers_a_take_over(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await click(bridge, root_ts, "handover_claim", user=ALICE)
    await wait_until(lambda: "Claimed by <@UAGENT01>" in root_text(fake_slack, root_ts))
    await click(bridge, root_ts, "handover_claim", user=BOB)
    await wait_until(lambda: ephemerals_to(fake_slack, BOB) != [])
    offer = ephemerals_to(fake_slack, BOB)[0]
    assert offer["channel"] == CHANNEL and f"<@{ALICE}> is already handling" in offer["text"]
    button = offer["blocks"][1]["elements"][0]
    assert (button["action_id"], button["value"]) == (TAKE_OVER_ACTION, root_ts)
    await wait_until(lambda: len(of_type(fake_reply, "handover_claimed")) == 1)
    assert [b["agent"]["slack_user_id"] for b in of_type(fake_reply, "handover_claimed")] == [ALICE]
    assert "Claimed by <@UAGENT01>" in root_text(fake_slack, root_ts)  # not taken silently

    assert await bridge.interaction(take_over(root_ts)) == 200
    await wait_until(lambda: len(of_type(fake_reply, "handover_claimed")) == 2)
    claims = of_type(fake_reply, "handover_claimed")
    assert [b["agent"]["name"] for b in claims] == ["Alice", "Bob Dupont"]
    assert claims[0]["id"] != claims[1]["id"]  # two events: a backend deduplicating on id keeps both
    await wait_until(lambda: "Claimed by <@UAGENT02>" in root_text(fake_slack, root_ts))


async def test_clicks_that_change_nothing_are_explained(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await click(bridge, root_ts, "handover_claim", user=ALICE)
    await click(bridge, root_ts, "handover_claim", user=ALICE)
    await wait_until(lambda: len(ephemerals_to(fake_slack, ALICE)) == 1)
    assert ephemerals_to(fake_slack, ALICE)[0]["text"] == "You already have this handover."
    await click(bridge, root_ts, "handover_resolve", user=ALICE)
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1)
    await click(bridge, root_ts, "handover_resolve", user=BOB)
    await wait_until(lambda: len(ephemerals_to(fake_slack, BOB)) == 1)
    assert ephemerals_to(fake_slack, BOB)[0]["text"] == "This handover is already resolved."
    assert len(ephemerals_to(fake_slack, ALICE)) == 1  # the click that did something: no ephemeral
    # A reply in the resolved handover's thread reaches nobody: its author is told.
    await reply(bridge, root_ts, "one more thing")
    await wait_until(lambda: len(ephemerals_to(fake_slack, ALICE)) == 2)
    closed = ephemerals_to(fake_slack, ALICE)[1]
    assert closed["thread_ts"] == root_ts and "resolved" in closed["text"]
    assert texts(fake_reply) == []


# -- slack.agents ------------------------------------------------------------------------------------------


async def test_only_listed_agents_and_group_members_act_and_are_relayed(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply, redis_url: str
) -> None:
    fake_slack.add_user(CAROL, "carol", "Carol Petit", "Carol")
    fake_slack.add_usergroup(GROUP, [CAROL])
    bridge = await make_bridge(file={"slack": {"agents": [ALICE, GROUP]}})
    store = bridge.app[BRIDGE].store
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await wait_until(lambda: len(fake_slack.calls_to("usergroups.users.list")) == 1)

    await click(bridge, root_ts, "handover_claim", user=BOB)  # not an agent: refused, told why
    await wait_until(lambda: len(ephemerals_to(fake_slack, BOB)) == 1)
    assert "slack.agents" in ephemerals_to(fake_slack, BOB)[0]["text"]
    await click(bridge, root_ts, "handover_resolve", user=BOB)  # nor resolve
    await wait_until(lambda: len(ephemerals_to(fake_slack, BOB)) == 2)
    await reply(bridge, root_ts, "from alice")
    envelope = thread_reply_event(CHANNEL, root_ts, "nor am I", user=BOB)
    assert await bridge.slack_event(envelope) == (200, {"ok": True})
    await wait_until(lambda: len(ephemerals_to(fake_slack, BOB)) == 3)
    told = ephemerals_to(fake_slack, BOB)[2]
    assert told["thread_ts"] == root_ts and "not sent" in told["text"]

    await reply(bridge, root_ts, "from a group member", user=CAROL)
    await wait_until(lambda: texts(fake_reply) == ["from alice", "from a group member"])
    assert [b["agent"]["slack_user_id"] for b in of_type(fake_reply, "agent_message")] == [ALICE, CAROL]
    assert of_type(fake_reply, "handover_claimed")[0]["agent"]["slack_user_id"] == ALICE  # claimed on reply
    assert of_type(fake_reply, "handover_resolved") == []

    # The group's members are cached in Redis for 10 minutes, shared by replicas: a second bridge
    # (another replica) starts without asking Slack again.
    ttl = await store.redis.ttl(usergroup_key(GROUP))
    assert 0 < ttl <= 600
    replica = await make_bridge(file={"slack": {"agents": [ALICE, GROUP]}})
    directory = replica.app[BRIDGE].slack_events.agents
    assert directory is not None
    await wait_until(lambda: directory.members(GROUP) == frozenset({CAROL}))
    assert len(fake_slack.calls_to("usergroups.users.list")) == 1


async def test_other_workspace_never_acts_or_is_relayed(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    """Slack Connect: no slack.agents at all, still a user of another workspace is refused."""
    bridge = await make_bridge()
    await wait_until(lambda: bridge.app[BRIDGE].identity is not None)
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    form = urllib.parse.parse_qs(block_action(CHANNEL, root_ts, "handover_claim", user=BOB).decode())
    payload = orjson.loads(form["payload"][0])
    payload["user"]["team_id"] = "TOTHER001"
    body = urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()
    assert await bridge.interaction(body) == 200
    await reply(bridge, root_ts, "from elsewhere", user=BOB, user_team="TOTHER001", team="TOTHER001")
    await reply(bridge, root_ts, "from here", user=ALICE, team="TFAKE0001")
    await wait_until(lambda: texts(fake_reply) == ["from here"])
    await wait_until(lambda: len(ephemerals_to(fake_slack, BOB)) == 2)
    assert [e["text"].split(" ")[0] for e in ephemerals_to(fake_slack, BOB)] == ["Users", "Replies"]
    assert of_type(fake_reply, "handover_claimed")[0]["agent"]["slack_user_id"] == ALICE


async def test_unrelayed_types_are_explained_edits_relayed_notes_and_bots_not_told(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply)
    await reply(bridge, root_ts, "first version", ts="1795600000.000100")

    def changed(message: dict[str, Any]) -> dict[str, Any]:
        envelope = thread_reply_event(CHANNEL, root_ts, "", subtype="message_changed")
        envelope["event"].pop("user")
        envelope["event"]["message"] = {
            "type": "message",
            "ts": "1795600000.000100",
            "thread_ts": root_ts,
            **message,
        }
        return envelope

    edit = changed({"user": ALICE, "text": "second version", "edited": {"user": ALICE, "ts": "1795600001.0"}})
    unfurl = changed({"user": ALICE, "text": "first version"})  # Slack adding a link preview: no `edited`
    note_edit = changed(
        {"user": ALICE, "text": "note: fixed", "edited": {"user": ALICE, "ts": "1795600002.0"}}
    )
    for envelope in (edit, unfurl, note_edit):
        assert await bridge.slack_event(envelope) == (200, {"ok": True})
    await reply(bridge, root_ts, "note: private, stays here")
    await reply(bridge, root_ts, "bot says", user="UBOT0001", bot_id="B0OTHER")
    await reply(bridge, root_ts, "/me waves", subtype="me_message")
    await reply(bridge, root_ts, "sentinel")
    await wait_until(lambda: texts(fake_reply) == ["first version", "sentinel"])
    # The edit within replies.edit_window is relayed (issue 17), the unfurl and the note are not.
    assert [b["text"] for b in of_type(fake_reply, "agent_message_edited")] == ["second version"]
    await wait_until(lambda: len(fake_slack.ephemerals) == 1)
    told = ephemerals_to(fake_slack, ALICE)
    assert [e["text"].split(" ")[0] for e in told] == ["This"]
    assert all(e["thread_ts"] == root_ts for e in told)
    # Outside a handover thread nobody is told anything.
    envelope = thread_reply_event(CHANNEL, "1600000000.000001", "x", subtype="me_message")
    assert await bridge.slack_event(envelope) == (200, {"ok": True})
    await reply(bridge, root_ts, "sentinel 2")
    await wait_until(lambda: texts(fake_reply)[-1:] == ["sentinel 2"])
    assert len(fake_slack.ephemerals) == 1


async def test_app_rate_limited_is_an_error_and_counted(bridge: BridgeClient) -> None:
    envelope = {
        "token": "x",
        "type": "app_rate_limited",
        "team_id": "TFAKE0001",
        "minute_rate_limited": 1518467820,
        "api_app_id": "ABRIDGE",
    }
    with capture_logs() as logs:
        assert await bridge.slack_event(envelope) == (200, {"ok": True})
    line = next(e for e in logs if e["event"] == "slack_app_rate_limited")
    assert line["log_level"] == "error" and line["minute_rate_limited"] == 1518467820
    assert 'bridge_slack_events_total{kind="app_rate_limited",outcome="received"} 1.0' in await metrics_text(
        bridge
    )


# -- channels the bridge cannot use ----------------------------------------------------------------------


async def test_unusable_channels_are_found_at_start_and_after_a_reload(
    make_bridge: Any, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    fake_slack.add_channel("C0OLD", archived=True)
    fake_slack.add_channel("C0NOTIN", member=False)
    config = tmp_path / "config.yaml"
    config.write_text(
        "routes:\n"
        "  - {name: old, match: {lang: de-*}, channel: C0OLD}\n"
        "  - {name: notin, match: {lang: it-*}, channel: C0NOTIN}\n"
        "  - {name: gone, match: {lang: es-*}, channel: C0NEVERMADE}\n"
    )
    with capture_logs() as logs:
        bridge = await make_bridge(config_path=config)

        def unusable() -> dict[str, dict[str, Any]]:
            return {e["channel"]: e for e in logs if e["event"] == "slack_channel_unusable"}

        await wait_until(lambda: len(unusable()) == 3)
        found = unusable()
        assert {c: e["reason"] for c, e in found.items()} == {
            "C0OLD": "archived",
            "C0NOTIN": "not_member",
            "C0NEVERMADE": "not_found",
        }
        assert all(e["log_level"] == "error" for e in found.values())
        assert found["C0NOTIN"]["fix"] == "invite the app with /invite @bridge"
        assert "/invite @bridge" in found["C0NEVERMADE"]["fix"]
        text = await metrics_text(bridge)
        for channel, usable in ((CHANNEL, 1), ("C0OLD", 0), ("C0NOTIN", 0), ("C0NEVERMADE", 0)):
            assert f'bridge_slack_channel_usable{{channel="{channel}"}} {usable}.0' in text

        # The owner invites the app, drops the archived route, adds a new one: checked after the reload.
        fake_slack.add_channel("C0NOTIN", member=True)
        fake_slack.add_channel("C0NEWDESK", member=False)
        config.write_text(
            "routes:\n"
            "  - {name: notin, match: {lang: it-*}, channel: C0NOTIN}\n"
            "  - {name: new, match: {lang: pt-*}, channel: C0NEWDESK}\n"
        )
        await wait_until(lambda: "C0NEWDESK" in unusable(), timeout_s=10)
        text = await metrics_text(bridge)
        assert 'bridge_slack_channel_usable{channel="C0NOTIN"} 1.0' in text
        assert 'bridge_slack_channel_usable{channel="C0NEWDESK"} 0.0' in text
        assert 'channel="C0OLD"' not in text  # no longer configured: no stale 0 to alert on
    info_calls = [c.params["channel"] for c in fake_slack.calls_to("conversations.info")]
    assert sorted(set(info_calls)) == sorted({CHANNEL, "C0OLD", "C0NOTIN", "C0NEVERMADE", "C0NEWDESK"})


async def test_channel_check_without_the_scope_names_it(make_bridge: Any, fake_slack: FakeSlack) -> None:
    fake_slack.scopes.discard("channels:read")
    fake_slack.scopes.discard("usergroups:read")
    fake_slack.add_usergroup(GROUP, [CAROL])
    with capture_logs() as logs:
        await make_bridge(file={"slack": {"agents": [GROUP]}})
        await wait_until(
            lambda: (
                {"slack_channel_check_failed", "slack_agents_refresh_failed"} <= {e["event"] for e in logs}
            )
        )
    failed = next(e for e in logs if e["event"] == "slack_channel_check_failed")
    assert failed["reason"] == "missing_scope" and "channels:read" in failed["fix"]
    groups = next(e for e in logs if e["event"] == "slack_agents_refresh_failed")
    assert groups["reason"] == "missing_scope" and "usergroups:read" in groups["fix"]


def test_check_config_refuses_direct_message_channels(tmp_path: Path) -> None:
    for text in ("slack: {default_channel: D0123ABCD}\n", "routes:\n  - {name: dm, channel: D0123ABCD}\n"):
        path = tmp_path / "config.yaml"
        path.write_text(text)
        out, err = io.StringIO(), io.StringIO()
        assert check_config_main(str(path), out=out, err=err) == 1
        assert "D0123ABCD" in err.getvalue() and "direct message" in err.getvalue()


def test_check_config_refuses_agents_that_are_not_ids(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("slack:\n  agents: [U0AAA, '@alice']\n")
    err = io.StringIO()
    assert check_config_main(str(path), out=io.StringIO(), err=err) == 1
    assert "not a Slack user or user group ID" in err.getvalue()
