"""Issue 16, the agent desk: outcomes on resolve, reopen, response-time targets, transfer, the Home
tab. Through the real endpoints (/smartly/hooks, /slack/events, /slack/interactions, /metrics), a real
valkey-server, the fake Slack (views.open, views.publish, chat.getPermalink, chat.postEphemeral with
Slack's argument checks) and the fake reply endpoint."""

from __future__ import annotations

import asyncio
import itertools
import time
import urllib.parse
from typing import Any

import orjson

from tests.harness import wait_until
from tests.harness.fake_reply import FakeReply
from tests.harness.fake_slack import FakeSlack
from tests.helpers import CHANNEL, BridgeClient, signed_headers, thread_reply_event
from tests.test_agents import ALICE, BOB, action_ids, of_type, open_handover, reply, thread_replies

# -- Slack's interaction payloads ------------------------------------------------------------------


def _form(payload: dict[str, Any]) -> bytes:
    return urllib.parse.urlencode({"payload": orjson.dumps(payload).decode()}).encode()


def _user(user: str) -> dict[str, str]:
    return {"id": user, "username": user.lower(), "name": user.lower(), "team_id": "TFAKE0001"}


def button(
    fake_slack: FakeSlack, root_ts: str, action_id: str, *, user: str = ALICE, channel: str = CHANNEL
) -> dict[str, Any]:
    """A click on a root's button, with a fresh trigger_id as Slack sends it."""
    return {
        "type": "block_actions",
        "user": _user(user),
        "trigger_id": fake_slack.trigger_id(),
        "channel": {"id": channel, "name": "support"},
        "container": {"type": "message", "message_ts": root_ts, "channel_id": channel},
        "message": {"ts": root_ts, "type": "message"},
        "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": "x"}],
    }


def submission(
    view: dict[str, Any], values: dict[str, dict[str, Any]], *, user: str = ALICE
) -> dict[str, Any]:
    """The view_submission of a modal the bridge opened (as the fake Slack recorded it)."""
    state = {block: {block: value} for block, value in values.items()}
    return {
        "type": "view_submission",
        "user": _user(user),
        "trigger_id": "1.2.abc",
        "view": {
            "id": "VFAKE",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view.get("private_metadata", ""),
            "state": {"values": state},
        },
    }


def selected(value: str) -> dict[str, Any]:
    return {
        "type": "static_select",
        "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value},
    }


async def interact(bridge: BridgeClient, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = _form(payload)
    headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
    response = await bridge.client.post("/slack/interactions", data=body, headers=headers)
    raw = await response.read()
    return response.status, (orjson.loads(raw) if raw else {})


async def metrics_text(bridge: BridgeClient) -> str:
    response = await bridge.client.get("/metrics")
    return (await response.read()).decode()


def root_edits(fake_slack: FakeSlack, root_ts: str, channel: str = CHANNEL) -> list[dict[str, Any]]:
    root = fake_slack.message(channel, root_ts)
    return root.edits if root is not None else []


# -- 4. outcomes on resolve --------------------------------------------------------------------------


async def test_resolve_without_outcomes_acts_at_once(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="olga")
    assert await interact(bridge, button(fake_slack, root_ts, "handover_resolve")) == (200, {})
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1)
    assert not fake_slack.modals
    body = of_type(fake_reply, "handover_resolved")[0]
    assert "outcome" not in body and "note" not in body
    text = await metrics_text(bridge)
    assert 'bridge_handover_resolution_seconds_count{outcome="none",route="default"} 1.0' in text


async def test_outcomes_resolve_through_a_modal_and_reach_the_owner(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"handover": {"outcomes": ["solved", "no_answer", "spam"]}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="olga")
    assert await interact(bridge, button(fake_slack, root_ts, "handover_resolve", user=BOB)) == (200, {})
    assert len(fake_slack.modals) == 1  # opened within the click's request, trigger_id exchanged
    modal = fake_slack.modals[0]
    assert modal["callback_id"] == "handover_resolve"
    blocks = {b["block_id"]: b for b in modal["blocks"]}
    assert [o["value"] for o in blocks["outcome"]["element"]["options"]] == ["solved", "no_answer", "spam"]
    assert blocks["outcome"]["element"]["action_id"] == "outcome"
    assert blocks["note"]["optional"] is True and blocks["note"]["element"]["action_id"] == "note"
    assert not of_type(fake_reply, "handover_resolved")  # nothing resolved by the click itself

    # An outcome that is not configured: Slack shows the error in the modal, nothing changes.
    status, answer = await interact(bridge, submission(modal, {"outcome": selected("fixed")}, user=BOB))
    assert status == 200 and answer["response_action"] == "errors" and "outcome" in answer["errors"]

    note = {"type": "plain_text_input", "value": "dup of <!channel> ticket"}
    payload = submission(modal, {"outcome": selected("spam"), "note": note}, user=BOB)
    assert await interact(bridge, payload) == (200, {})
    await wait_until(lambda: len(of_type(fake_reply, "handover_resolved")) == 1)
    body = of_type(fake_reply, "handover_resolved")[0]
    assert (body["outcome"], body["note"], body["agent"]["slack_user_id"]) == (
        "spam",
        "dup of <!channel> ticket",
        BOB,
    )
    await wait_until(lambda: any("Outcome: *spam*" in t for t in thread_replies(fake_slack, root_ts)))
    closing = next(t for t in thread_replies(fake_slack, root_ts) if "Outcome" in t)
    assert "&lt;!channel&gt;" in closing and "<!channel>" not in closing  # the note is escaped
    text = await metrics_text(bridge)
    assert 'bridge_handover_resolution_seconds_count{outcome="spam",route="default"} 1.0' in text

    # Submitting again (a double click): the handover is no longer open.
    status, answer = await interact(bridge, payload)
    assert answer["response_action"] == "errors"
    assert len(of_type(fake_reply, "handover_resolved")) == 1


async def test_a_stale_trigger_opens_no_modal_and_changes_nothing(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"handover": {"outcomes": ["solved"]}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="olga")
    click = button(fake_slack, root_ts, "handover_resolve")
    fake_slack.triggers[click["trigger_id"]] -= 4  # the click was 4 s ago: past Slack's 3 s
    assert await interact(bridge, click) == (200, {})
    assert not fake_slack.modals
    assert [c.response["error"] for c in fake_slack.calls_to("views.open")] == ["expired_trigger_id"]
    assert not of_type(fake_reply, "handover_resolved")


# -- 5. reopen ----------------------------------------------------------------------------------------


async def test_reopen_inside_the_window_then_the_button_goes_away(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file={"handover": {"reopen_window": "3s"}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="pia")
    await interact(bridge, button(fake_slack, root_ts, "handover_resolve"))
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_reopen"])

    assert await interact(bridge, button(fake_slack, root_ts, "handover_reopen", user=BOB)) == (200, {})
    await wait_until(lambda: len(of_type(fake_reply, "handover_opened")) == 2)
    reopened = of_type(fake_reply, "handover_opened")[1]
    assert reopened["reopened"] is True and reopened["thread_ts"] == root_ts
    assert len({b["id"] for b in fake_reply.bodies()}) == len(fake_reply.bodies())  # its own id
    await wait_until(lambda: action_ids(fake_slack, root_ts)[:2] == ["handover_claim", "handover_resolve"])
    await wait_until(lambda: any("Reopened by <@UAGENT02>" in t for t in thread_replies(fake_slack, root_ts)))

    # Live again in the same thread: the user's lines are mirrored, agents' replies relayed.
    await bridge.hook({**_message("pia", "still there?")})
    await wait_until(lambda: any("still there?" in t for t in thread_replies(fake_slack, root_ts)))
    await reply(bridge, root_ts, "yes, back on it", user=BOB)
    await wait_until(lambda: [b["text"] for b in of_type(fake_reply, "agent_message")] == ["yes, back on it"])
    assert len(fake_slack.roots(CHANNEL)) == 1

    # Resolved again; 3 s later the Reopen button is gone, and a click then changes nothing.
    await interact(bridge, button(fake_slack, root_ts, "handover_resolve"))
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_reopen"])
    await wait_until(lambda: action_ids(fake_slack, root_ts) == [], timeout_s=6)
    await interact(bridge, button(fake_slack, root_ts, "handover_reopen", user=BOB))
    await wait_until(lambda: len(fake_slack.ephemerals) == 1)
    assert "reopen window has passed" in fake_slack.ephemerals[0]["text"]
    assert len(of_type(fake_reply, "handover_opened")) == 2

    # The next escalation opens a new thread, as before.
    new_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="pia")
    assert new_ts != root_ts and len(fake_slack.roots(CHANNEL)) == 2


def _message(client_id: str, text: str) -> dict[str, Any]:
    from tests.helpers import message

    return message(client_id, text, f"bot: {text}")


async def test_reopen_is_refused_once_a_newer_handover_opened(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="quinn")
    await interact(bridge, button(fake_slack, root_ts, "handover_resolve"))
    await wait_until(lambda: action_ids(fake_slack, root_ts) == ["handover_reopen"])
    new_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="quinn")
    await interact(bridge, button(fake_slack, root_ts, "handover_reopen"))
    await wait_until(lambda: len(fake_slack.ephemerals) == 1)
    assert "newer handover" in fake_slack.ephemerals[0]["text"]
    assert [b["thread_ts"] for b in of_type(fake_reply, "handover_opened")] == [root_ts, new_ts]
    assert time.time() > 0


# -- 2. response-time targets --------------------------------------------------------------------------

ONCALL = "<!subteam^S0ONCALL1>"
FRENCH = "<!subteam^S0FRENCH1>"


def sla_file(**route: Any) -> dict[str, Any]:
    return {
        "sla": {"first_response": "5m"},  # the global target, replaced by the route's own
        "routes": [
            {
                "name": "fr",
                "match": {"lang": "fr-*"},
                "mention": FRENCH,
                "sla": {"first_response": "1s", "remind_every": "1s", "escalate_after": "2500ms"},
                **route,
            }
        ],
    }


def reminders(fake_slack: FakeSlack, root_ts: str) -> list[Any]:
    return [m for m in fake_slack.replies(CHANNEL, root_ts) if m.text.startswith(":alarm_clock:")]


async def test_sla_reminds_then_escalates_and_the_first_reply_stops_the_timers(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    file = sla_file()
    file["routes"][0]["sla"]["escalate_mention"] = ONCALL
    bridge = await make_bridge(file=file)
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="rita")
    assert 'bridge_handovers_waiting{route="fr"} 1.0' in await metrics_text(bridge)

    await wait_until(lambda: len(reminders(fake_slack, root_ts)) >= 1, timeout_s=4)
    first = reminders(fake_slack, root_ts)[0].text
    assert FRENCH in first and "has waited 1s" in first  # the route's mention, and how long
    await wait_until(lambda: len(of_type(fake_reply, "handover_sla_breached")) == 1, timeout_s=5)
    breach = of_type(fake_reply, "handover_sla_breached")[0]
    assert breach["thread_ts"] == root_ts and breach["route"] == "fr"
    await wait_until(
        lambda: any(
            t.startswith(":rotating_light:") and ONCALL in t for t in thread_replies(fake_slack, root_ts)
        )
    )
    await wait_until(
        lambda: "Response-time target missed" in str(fake_slack.message(CHANNEL, root_ts).blocks)
    )
    assert 'bridge_sla_breaches_total{route="fr"} 1.0' in await metrics_text(bridge)

    await reply(bridge, root_ts, "Bonjour, Alice ici")
    await wait_until(lambda: len(of_type(fake_reply, "agent_message")) == 1)
    seen = len(reminders(fake_slack, root_ts))
    await asyncio.sleep(2.5)  # reminders were due every second: none may come now
    assert len(reminders(fake_slack, root_ts)) == seen
    assert len(of_type(fake_reply, "handover_sla_breached")) == 1
    text = await metrics_text(bridge)
    assert 'bridge_handovers_waiting{route="fr"} 0.0' in text
    assert 'bridge_handover_first_response_seconds_count{route="fr"} 1.0' in text


async def test_sla_timers_do_not_run_outside_business_hours(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    other_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(time.gmtime().tm_wday + 3) % 7]
    hours = {"timezone": "UTC", "weekly": {other_day: "09:00-10:00"}}
    bridge = await make_bridge(file=sla_file(business_hours=hours))
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="sam")
    await asyncio.sleep(3.5)  # past first_response and escalate_after, in wall-clock time
    assert reminders(fake_slack, root_ts) == []
    assert of_type(fake_reply, "handover_sla_breached") == []


async def test_two_replicas_share_the_timers_and_post_each_reminder_once(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    file = sla_file()
    del file["routes"][0]["sla"]["escalate_after"]
    first = await make_bridge(file=file)
    await make_bridge(file=file)  # a second replica on the same Redis, sweeping the same timers
    root_ts = await open_handover(first, fake_slack, fake_reply, client_id="tom")
    await wait_until(lambda: len(reminders(fake_slack, root_ts)) >= 3, timeout_s=6)
    posted = reminders(fake_slack, root_ts)
    gaps = [b.at - a.at for a, b in itertools.pairwise(posted)]
    assert all(gap > 0.6 for gap in gaps), gaps  # one per remind_every, never two at once
    assert len({m.text for m in posted}) == len(posted)  # each says a longer wait


# -- 1. the Home tab ----------------------------------------------------------------------------------


def home_opened(user: str) -> dict[str, Any]:
    return {
        "type": "event_callback",
        "team_id": "TFAKE0001",
        "api_app_id": "ABRIDGE",
        "event": {"type": "app_home_opened", "user": user, "channel": "D0HOME", "tab": "home"},
        "event_id": f"EvHOME{time.monotonic_ns()}",
        "event_time": int(time.time()),
    }


def home_entries(fake_slack: FakeSlack, user: str) -> list[dict[str, Any]]:
    view = fake_slack.home_views.get(user) or {"blocks": []}
    return [b for b in view["blocks"] if b["type"] == "section" and "accessory" in b]


def home_click(fake_slack: FakeSlack, entry: dict[str, Any], *, user: str) -> dict[str, Any]:
    """A click on a Home tab button: the container is the view, the thread rides in the value."""
    action = entry["accessory"]
    return {
        "type": "block_actions",
        "user": _user(user),
        "trigger_id": fake_slack.trigger_id(),
        "container": {"type": "view", "view_id": "VHOME"},
        "view": {"id": "VHOME", "type": "home"},
        "actions": [
            {"action_id": action["action_id"], "block_id": "b", "type": "button", "value": action["value"]}
        ],
    }


async def test_home_lists_the_queue_urgent_first_and_refreshes_after_a_claim(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(file=sla_file())
    roots = {}
    for client in ("uma", "vic", "wes"):
        roots[client] = await open_handover(bridge, fake_slack, fake_reply, client_id=client)
    await bridge.hook(_message("wes", "call <!channel> now <https://evil|click>"))
    await interact(bridge, button(fake_slack, roots["vic"], "handover_claim", user=BOB))
    await wait_until(lambda: len(of_type(fake_reply, "handover_claimed")) == 1)

    assert await bridge.slack_event(home_opened(ALICE)) == (200, {"ok": True})
    await wait_until(lambda: len(home_entries(fake_slack, ALICE)) == 3)
    entries = [e["text"]["text"] for e in home_entries(fake_slack, ALICE)]
    # unclaimed first, oldest first; then the claimed one, with who has it
    assert ["uma" in entries[0], "wes" in entries[1], "vic" in entries[2]] == [True, True, True]
    assert "claimed by <@UAGENT02>" in entries[2] and "unclaimed" in entries[0]
    assert "fr" in entries[0] and "fr-fr" in entries[0] and "webchat" in entries[0]
    assert "left" in entries[0] or "past" in entries[0]  # its SLA state
    assert "&lt;!channel&gt;" in entries[1] and "<!channel>" not in entries[1]  # the excerpt is escaped
    assert fake_slack.permalink(CHANNEL, roots["uma"]) in entries[0]  # link to its thread
    assert [e["accessory"]["action_id"] for e in home_entries(fake_slack, ALICE)] == [
        "handover_claim",
        "handover_claim",
        "handover_resolve",
    ]
    assert BOB not in fake_slack.home_views  # never opened the tab
    links_asked = len(fake_slack.calls_to("chat.getPermalink"))
    assert links_asked == 3

    # Claim from the Home tab: the thread changes, and the view is fresh within 5 s.
    started = time.monotonic()
    assert await interact(bridge, home_click(fake_slack, home_entries(fake_slack, ALICE)[0], user=ALICE)) == (
        200,
        {},
    )
    await wait_until(lambda: len(of_type(fake_reply, "handover_claimed")) == 2)
    assert of_type(fake_reply, "handover_claimed")[1]["thread_ts"] == roots["uma"]
    await wait_until(
        lambda: (
            [e["accessory"]["action_id"] for e in home_entries(fake_slack, ALICE)].count("handover_claim")
            == 1
        )
    )
    assert time.monotonic() - started < 5
    assert len(fake_slack.calls_to("chat.getPermalink")) == links_asked  # cached in Redis


async def test_home_shows_the_50_most_urgent_and_the_total_within_100_blocks(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    for i in range(53):
        assert (await bridge.hook(_escalation(f"user{i:02d}")))[0] == 200
    await wait_until(lambda: len(fake_slack.roots(CHANNEL)) == 53, timeout_s=15)
    await bridge.slack_event(home_opened(ALICE))
    await wait_until(lambda: len(home_entries(fake_slack, ALICE)) == 50, timeout_s=10)
    view = fake_slack.home_views[ALICE]
    assert len(view["blocks"]) <= 100
    assert "53 open" in str(view["blocks"]) and "50 most urgent" in str(view["blocks"])
    texts = [e["text"]["text"] for e in home_entries(fake_slack, ALICE)]
    assert "user00" in texts[0] and not any("user52" in t for t in texts)  # oldest first
    assert all(c.response["ok"] for c in fake_slack.calls_to("views.publish"))


def _escalation(client_id: str) -> dict[str, Any]:
    from tests.helpers import escalation

    return escalation(client_id)


async def test_two_replicas_publish_each_change_once_per_viewer(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    first = await make_bridge()
    second = await make_bridge()
    await first.slack_event(home_opened(ALICE))
    await second.slack_event(home_opened(BOB))
    await wait_until(lambda: {ALICE, BOB} <= set(fake_slack.home_views))
    before = len(fake_slack.calls_to("views.publish"))
    await open_handover(second, fake_slack, fake_reply, client_id="xan")
    await wait_until(
        lambda: len(home_entries(fake_slack, ALICE)) == 1 and len(home_entries(fake_slack, BOB)) == 1
    )
    await asyncio.sleep(2.5)  # both replicas poll: only the lease holder publishes
    users = [c.params["user_id"] for c in fake_slack.calls_to("views.publish")[before:]]
    assert sorted(users) == [ALICE, BOB]


# -- 3. transfer ---------------------------------------------------------------------------------------

BILLING = "C0BILLING1"


async def test_transfer_opens_a_new_thread_in_the_target_route_and_closes_the_old_one(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    route = {"name": "billing", "match": {"lang": "en-*"}, "channel": BILLING, "mention": "<!subteam^S0BILL>"}
    bridge = await make_bridge(file={"routes": [route]})
    old_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="yan")
    assert await interact(bridge, button(fake_slack, old_ts, "handover_transfer")) == (200, {})
    modal = fake_slack.modals[0]
    assert modal["callback_id"] == "handover_transfer"
    select = modal["blocks"][0]
    assert (select["block_id"], select["element"]["action_id"]) == ("route", "route")
    assert [o["value"] for o in select["element"]["options"]] == ["billing"]  # not the route it is on

    _, answer = await interact(bridge, submission(modal, {"route": selected("nowhere")}))
    assert answer["response_action"] == "errors" and "route" in answer["errors"]
    assert await interact(bridge, submission(modal, {"route": selected("billing")})) == (200, {})

    await wait_until(lambda: len(fake_slack.roots(BILLING)) == 1)
    new_ts = fake_slack.roots(BILLING)[0].ts
    new_root = fake_slack.message(BILLING, new_ts)
    assert new_root is not None and "<!subteam^S0BILL>" in new_root.text
    assert f"Transferred from <{fake_slack.permalink(CHANNEL, old_ts)}|default> by <@UAGENT01>" in str(
        new_root.blocks
    )
    await wait_until(lambda: any("my parcel is late" in m.text for m in fake_slack.replies(BILLING, new_ts)))

    # The old thread: a closing line linking to the new one, its root "Transferred", no buttons.
    link = fake_slack.permalink(BILLING, new_ts)
    await wait_until(lambda: any(link in t for t in thread_replies(fake_slack, old_ts)))
    await wait_until(lambda: action_ids(fake_slack, old_ts) == [])
    assert "Transferred" in fake_slack.message(CHANNEL, old_ts).text
    await wait_until(lambda: len(of_type(fake_reply, "handover_transferred")) == 1)
    moved = of_type(fake_reply, "handover_transferred")[0]
    assert (moved["from_route"], moved["to_route"], moved["thread_ts"]) == ("default", "billing", new_ts)
    assert moved["agent"]["slack_user_id"] == ALICE
    assert [b["thread_ts"] for b in of_type(fake_reply, "handover_opened")] == [old_ts]

    # Later lines and agent replies follow the new thread only.
    await bridge.hook(_message("yan", "anyone there?"))
    await wait_until(lambda: any("anyone there?" in m.text for m in fake_slack.replies(BILLING, new_ts)))
    assert not any("anyone there?" in t for t in thread_replies(fake_slack, old_ts))
    await reply(bridge, old_ts, "from the old thread")
    envelope = thread_reply_event(BILLING, new_ts, "from the new thread", user=BOB)
    assert await bridge.slack_event(envelope) == (200, {"ok": True})
    await wait_until(lambda: len(of_type(fake_reply, "agent_message")) == 1)
    await asyncio.sleep(0.3)
    assert [b["text"] for b in of_type(fake_reply, "agent_message")] == ["from the new thread"]


# -- the same over Socket Mode, and the root's Resolve button --------------------------------------------


def resolve_button(fake_slack: FakeSlack, root_ts: str) -> dict[str, Any]:
    root = fake_slack.message(CHANNEL, root_ts)
    assert root is not None and root.blocks is not None
    actions = next(b for b in root.blocks if b["type"] == "actions")
    return next(e for e in actions["elements"] if e["action_id"] == "handover_resolve")


async def test_modal_errors_ride_on_the_socket_mode_ack(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    from tests.test_socket_mode import RecordingClient, listener_of, wire

    bridge = await make_bridge(file={"handover": {"outcomes": ["solved"]}})
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="zoe")
    resolve = resolve_button(fake_slack, root_ts)
    assert resolve["action_id"] == "handover_resolve" and "confirm" not in resolve  # the modal asks instead
    client = RecordingClient()
    listen = listener_of(bridge)
    await listen(client, wire("interactive", "env-click", button(fake_slack, root_ts, "handover_resolve")))
    assert client.acks == [{"envelope_id": "env-click"}] and len(fake_slack.modals) == 1
    wrong = submission(fake_slack.modals[0], {"outcome": selected("nope")})
    await listen(client, wire("interactive", "env-submit", wrong))
    assert client.acks[-1]["envelope_id"] == "env-submit"
    assert client.acks[-1]["payload"]["response_action"] == "errors"
    right = submission(fake_slack.modals[0], {"outcome": selected("solved")})
    await listen(client, wire("interactive", "env-submit-2", right))
    assert client.acks[-1] == {"envelope_id": "env-submit-2"}
    await wait_until(
        lambda: [b.get("outcome") for b in of_type(fake_reply, "handover_resolved")] == ["solved"]
    )


async def test_without_outcomes_the_root_asks_to_confirm(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="zed")
    resolve = resolve_button(fake_slack, root_ts)
    assert resolve["action_id"] == "handover_resolve" and resolve["confirm"]["title"]["text"]


async def test_only_listed_agents_see_the_queue_and_use_the_desk_buttons(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge(
        file={
            "slack": {"agents": [ALICE]},
            "routes": [{"name": "billing", "match": {"lang": "en-*"}, "channel": BILLING}],
        }
    )
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="ann")
    await bridge.slack_event(home_opened(ALICE))
    await bridge.slack_event(home_opened(BOB))
    await wait_until(lambda: {ALICE, BOB} <= set(fake_slack.home_views))
    assert len(home_entries(fake_slack, ALICE)) == 1
    assert home_entries(fake_slack, BOB) == [] and "slack.agents" in str(fake_slack.home_views[BOB])

    assert await interact(bridge, button(fake_slack, root_ts, "handover_transfer", user=BOB)) == (200, {})
    assert not fake_slack.modals  # refused before any modal
    await wait_until(lambda: len(fake_slack.ephemerals) == 1)
    assert fake_slack.ephemerals[0]["user"] == BOB and "slack.agents" in fake_slack.ephemerals[0]["text"]
    await interact(bridge, button(fake_slack, root_ts, "handover_transfer", user=ALICE))
    modal = fake_slack.modals[0]
    _, answer = await interact(bridge, submission(modal, {"route": selected("billing")}, user=BOB))
    assert answer["response_action"] == "errors"  # a submit by a non-agent changes nothing
    assert fake_slack.roots(BILLING) == []


async def test_a_rate_limited_views_publish_waits_for_retry_after_then_publishes(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    bridge = await make_bridge()
    await open_handover(bridge, fake_slack, fake_reply, client_id="ivy")
    fake_slack.rate_limit_for(2.0, retry_after=2, methods=["views.publish"])
    started = time.monotonic()
    await bridge.slack_event(home_opened(ALICE))
    await wait_until(lambda: len(home_entries(fake_slack, ALICE)) == 1, timeout_s=8)
    assert time.monotonic() - started >= 1.5  # not before Slack's Retry-After
    calls = fake_slack.calls_to("views.publish")
    assert [c.status for c in calls][-1] == 200
    assert sum(1 for c in calls if c.status == 429) <= 2  # it waited instead of hammering


async def test_forgetting_a_user_republishes_home_tabs_without_them(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    token = "admin-token-for-desk-tests"
    bridge = await make_bridge(bridge_admin_token=token)
    await open_handover(bridge, fake_slack, fake_reply, client_id="kim")
    await bridge.hook(_message("kim", "my street is Rue Secrète"))
    await bridge.slack_event(home_opened(ALICE))
    await wait_until(lambda: "Rue Secrète" in str(fake_slack.home_views.get(ALICE, {})))
    response = await bridge.client.delete(
        "/admin/conversations/skill1/kim", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status == 200
    await wait_until(lambda: "Rue Secrète" not in str(fake_slack.home_views[ALICE]), timeout_s=8)
    assert home_entries(fake_slack, ALICE) == []


async def test_sla_timers_resume_when_business_hours_open(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply, tmp_path: Any
) -> None:
    """Closed hours stop the clock; once open (here: a config reload), the reminder comes after the
    target counted in open time, not at once."""
    from bridge.runtime import BRIDGE
    from tests.conftest import TEST_DELIVERY

    other_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(time.gmtime().tm_wday + 3) % 7]
    closed = sla_file(business_hours={"timezone": "UTC", "weekly": {other_day: "09:00-10:00"}})
    closed["routes"][0]["sla"] = {"first_response": "2s"}
    path = tmp_path / "config.yaml"
    path.write_text(orjson.dumps({**closed, "delivery": TEST_DELIVERY}).decode())
    bridge = await make_bridge(file=closed, config_path=path)
    root_ts = await open_handover(bridge, fake_slack, fake_reply, client_id="una")
    await asyncio.sleep(2.5)
    assert reminders(fake_slack, root_ts) == []  # 2s of wall-clock time passed, all of it closed

    opened = {**closed, "routes": [{**closed["routes"][0], "business_hours": "always"}]}
    path.write_text(orjson.dumps({**opened, "delivery": TEST_DELIVERY}).decode())
    assert bridge.app[BRIDGE].holder.reload() is True
    reopened_at = time.monotonic()
    await wait_until(lambda: len(reminders(fake_slack, root_ts)) == 1, timeout_s=6)
    assert reminders(fake_slack, root_ts)[0].at - reopened_at > 0.9  # its 2s run in open time


async def test_home_tab_off_is_logged_once_per_change_not_retried_forever(
    make_bridge: Any, fake_slack: FakeSlack, fake_reply: FakeReply
) -> None:
    fake_slack.home_enabled = False
    bridge = await make_bridge()
    await open_handover(bridge, fake_slack, fake_reply, client_id="val")
    await bridge.slack_event(home_opened(ALICE))
    await wait_until(lambda: len(fake_slack.calls_to("views.publish")) == 1)
    await asyncio.sleep(1.5)  # several publisher rounds
    assert [c.response["error"] for c in fake_slack.calls_to("views.publish")] == ["not_enabled"]
