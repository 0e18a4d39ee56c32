"""Issue 14 item 6: the fake Slack refuses what Slack refuses (limits, unknown channels, scopes, metadata
only on request, threads read from any of their messages), through slack-sdk over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.harness.fake_slack import DEFAULT_SCOPES, DEFAULT_TOKEN, FakeSlack
from tests.helpers import CHANNEL


def slack(fake: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token=DEFAULT_TOKEN, base_url=fake.url, retry_handlers=[])


async def refused(call: Any) -> dict[str, Any]:
    with pytest.raises(SlackApiError) as err:
        await call
    assert err.value.response.status_code == 200
    return dict(err.value.response.data)


def section_fields(*texts: str) -> list[dict[str, Any]]:
    return [{"type": "section", "fields": [{"type": "mrkdwn", "text": t} for t in texts]}]


async def test_block_kit_limits(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    assert (await client.chat_postMessage(channel=CHANNEL, text="t", blocks=section_fields("x" * 2000)))["ok"]
    answer = await refused(
        client.chat_postMessage(channel=CHANNEL, text="t", blocks=section_fields("x" * 2001))
    )
    assert answer["error"] == "invalid_blocks" and "/blocks/0/fields/0/text" in answer["errors"][0]
    eleven = section_fields(*["f"] * 11)
    assert (await refused(client.chat_postMessage(channel=CHANNEL, text="t", blocks=eleven)))["error"] == (
        "invalid_blocks"
    )
    context = [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}]
    assert (await refused(client.chat_postMessage(channel=CHANNEL, text="t", blocks=context)))["error"] == (
        "invalid_blocks"
    )
    header = [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]
    assert (await refused(client.chat_postMessage(channel=CHANNEL, text="t", blocks=header)))["error"] == (
        "invalid_blocks"
    )


async def test_chat_update_text_limit_is_4000(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    ts = (await client.chat_postMessage(channel=CHANNEL, text="x" * 10_000))["ts"]  # a post may be longer
    assert (await client.chat_update(channel=CHANNEL, ts=ts, text="y" * 4000))["ok"]
    assert (await refused(client.chat_update(channel=CHANNEL, ts=ts, text="y" * 4001)))[
        "error"
    ] == "msg_too_long"


async def test_unknown_archived_and_not_member_channels(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    assert (await refused(client.chat_postMessage(channel="C0NEVERMADE", text="x")))["error"] == (
        "channel_not_found"
    )
    assert (await refused(client.conversations_info(channel="C0NEVERMADE")))["error"] == "channel_not_found"
    fake_slack.add_channel("C0OLD", archived=True)
    fake_slack.add_channel("C0NOTIN", member=False)
    fake_slack.add_channel("G0SECRET", member=False)  # private, bot not in it: invisible
    assert (await refused(client.chat_postMessage(channel="C0OLD", text="x")))["error"] == "is_archived"
    assert (await refused(client.chat_postMessage(channel="C0NOTIN", text="x")))["error"] == "not_in_channel"
    assert (await refused(client.conversations_history(channel="C0NOTIN")))["error"] == "not_in_channel"
    assert (await refused(client.conversations_info(channel="G0SECRET")))["error"] == "channel_not_found"
    old = (await client.conversations_info(channel="C0OLD"))["channel"]
    notin = (await client.conversations_info(channel="C0NOTIN"))["channel"]
    ok = (await client.conversations_info(channel=CHANNEL))["channel"]
    assert (old["is_archived"], old["is_member"]) == (True, True)
    assert (notin["is_archived"], notin["is_member"]) == (False, False)
    assert (ok["id"], ok["is_archived"], ok["is_member"], ok["is_private"]) == (CHANNEL, False, True, False)
    fake_slack.remove_channel(CHANNEL)
    assert (await refused(client.chat_postMessage(channel=CHANNEL, text="x")))["error"] == "channel_not_found"


async def test_scopes_header_on_every_answer_and_missing_scope(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    answer = await client.auth_test()
    assert answer.headers["x-oauth-scopes"] == ",".join(sorted(DEFAULT_SCOPES))
    failed = await refused(client.chat_postMessage(channel="C0NEVERMADE", text="x"))
    assert failed["error"] == "channel_not_found"
    assert fake_slack.calls[-1].status == 200
    fake_slack.scopes.discard("usergroups:read")
    fake_slack.add_usergroup("S0AGENTS", ["UAGENT01"])
    with pytest.raises(SlackApiError) as err:
        await client.usergroups_users_list(usergroup="S0AGENTS")
    data = err.value.response.data
    assert (data["error"], data["needed"]) == ("missing_scope", "usergroups:read")
    assert "usergroups:read" not in data["provided"] and "chat:write" in data["provided"]
    assert "usergroups:read" not in err.value.response.headers["x-oauth-scopes"]
    assert err.value.response.headers["x-accepted-oauth-scopes"] == "usergroups:read"
    fake_slack.scopes.discard("groups:read")  # private channels need groups:read, public channels:read
    assert (await client.conversations_info(channel=CHANNEL))["ok"]
    assert (await refused(client.conversations_info(channel="G0123ABCD")))["needed"] == "groups:read"


async def test_usergroups_and_ephemerals(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    fake_slack.add_usergroup("S0AGENTS", ["UAGENT01", "UAGENT02"])
    assert (await client.usergroups_users_list(usergroup="S0AGENTS"))["users"] == ["UAGENT01", "UAGENT02"]
    assert (await refused(client.usergroups_users_list(usergroup="S0NONE")))["error"] == "no_such_subteam"
    assert (await client.chat_postEphemeral(channel=CHANNEL, user="UAGENT01", text="only you"))["ok"]
    assert fake_slack.ephemerals[-1]["text"] == "only you"
    assert (await refused(client.chat_postEphemeral(channel=CHANNEL, user="UNOBODY", text="x")))["error"] == (
        "user_not_in_channel"
    )
    assert (await refused(client.chat_postEphemeral(channel="C0NEVERMADE", user="UAGENT01", text="x")))[
        "error"
    ] == "channel_not_found"


async def test_metadata_only_with_include_all_metadata_and_replies_from_any_message(
    fake_slack: FakeSlack,
) -> None:
    client = slack(fake_slack)
    metadata = {"event_type": "bridge_delivery", "event_payload": {"first": "1-0"}}
    root = (await client.chat_postMessage(channel=CHANNEL, text="root", metadata=metadata))["ts"]
    reply = (await client.chat_postMessage(channel=CHANNEL, text="r1", thread_ts=root, metadata=metadata))[
        "ts"
    ]
    await client.chat_postMessage(channel=CHANNEL, text="r2", thread_ts=root)
    plain = (await client.conversations_history(channel=CHANNEL))["messages"]
    assert "metadata" not in plain[0]
    full = (await client.conversations_history(channel=CHANNEL, include_all_metadata=True))["messages"]
    assert full[0]["metadata"] == metadata
    thread = (await client.conversations_replies(channel=CHANNEL, ts=reply))["messages"]
    assert [m["text"] for m in thread] == ["root", "r1", "r2"]  # the whole thread, from a reply's ts
    assert all("metadata" not in m for m in thread)
    thread = (await client.conversations_replies(channel=CHANNEL, ts=reply, include_all_metadata=True))[
        "messages"
    ]
    assert thread[1]["metadata"] == metadata


async def test_any_error_code_on_demand(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    fake_slack.fail_with_error("missing_scope", methods=["chat.postMessage"], times=1, needed="chat:write")
    answer = await refused(client.chat_postMessage(channel=CHANNEL, text="x"))
    assert (answer["error"], answer["needed"]) == ("missing_scope", "chat:write")
    assert (await client.chat_postMessage(channel=CHANNEL, text="x"))["ok"]
    fake_slack.fail_with_error("update_failed", methods=["chat.update"])
    ts = (await client.chat_postMessage(channel=CHANNEL, text="y"))["ts"]
    assert (await refused(client.chat_update(channel=CHANNEL, ts=ts, text="z")))["error"] == "update_failed"


# -- views (the desk: Home tab and modals) ------------------------------------------------------------


def a_modal(**overrides: Any) -> dict[str, Any]:
    select = {
        "type": "static_select",
        "action_id": "o",
        "options": [{"text": {"type": "plain_text", "text": "a"}, "value": "a"}],
    }
    view = {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Resolve handover"},
        "submit": {"type": "plain_text", "text": "Resolve"},
        "blocks": [
            {
                "type": "input",
                "block_id": "o",
                "label": {"type": "plain_text", "text": "O"},
                "element": select,
            }
        ],
    }
    return {**view, **overrides}


async def test_views_open_checks_the_trigger_and_the_modal(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    trigger = fake_slack.trigger_id()
    assert (await client.views_open(trigger_id=trigger, view=a_modal()))["ok"]
    assert (await refused(client.views_open(trigger_id=trigger, view=a_modal())))[
        "error"
    ] == "exchanged_trigger_id"
    assert (await refused(client.views_open(trigger_id="1.2.abc", view=a_modal())))[
        "error"
    ] == "invalid_trigger_id"
    stale = fake_slack.trigger_id()
    fake_slack.triggers[stale] -= 3.5
    assert (await refused(client.views_open(trigger_id=stale, view=a_modal())))[
        "error"
    ] == "expired_trigger_id"
    for bad in (
        a_modal(title={"type": "plain_text", "text": "t" * 25}),
        a_modal(submit=None),  # input blocks need a submit button
        a_modal(blocks=[{"type": "divider"}] * 101),
        a_modal(type="home"),
    ):
        answer = await refused(client.views_open(trigger_id=fake_slack.trigger_id(), view=bad))
        assert answer["error"] == "invalid_arguments" and answer["response_metadata"]["messages"]
    assert len(fake_slack.modals) == 1


async def test_views_publish_checks_the_home_view_and_slacks_rate(fake_slack: FakeSlack) -> None:
    client = slack(fake_slack)
    home = {"type": "home", "blocks": [{"type": "divider"}] * 100}
    assert (await client.views_publish(user_id="UAGENT01", view=home))["ok"]
    assert fake_slack.home_views["UAGENT01"] == home
    too_many = {"type": "home", "blocks": [{"type": "divider"}] * 101}
    assert (await refused(client.views_publish(user_id="UAGENT01", view=too_many)))[
        "error"
    ] == "invalid_arguments"
    assert (await refused(client.views_publish(user_id="UAGENT01", view=a_modal())))[
        "error"
    ] == "invalid_arguments"
    fake_slack.home_enabled = False
    assert (await refused(client.views_publish(user_id="UAGENT01", view=home)))["error"] == "not_enabled"
    fake_slack.home_enabled = True
    for _ in range(96):  # 100 calls a minute in all, refused ones included
        await client.views_publish(user_id="UAGENT02", view=home)
    with pytest.raises(SlackApiError) as err:
        await client.views_publish(user_id="UAGENT02", view=home)
    assert err.value.response.status_code == 429 and int(err.value.response.headers["Retry-After"]) >= 1
