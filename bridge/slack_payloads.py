"""The parts of Slack's Events API and interaction payloads the bridge reads, as pydantic models.

A signed request can still carry a payload of the wrong shape (a Slack change, a replayed or hand-made
body): every field the handlers read is validated here, so a wrong shape is one clear `PayloadError`
instead of a crash deep in a handler. Models ignore fields they do not name (Slack adds fields freely);
add a field here before reading it elsewhere.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, ValidationError

# A Slack message timestamp: seconds, a dot, microseconds ("1700000000.000100"). Never "abc" or "1e999".
SlackTs = Annotated[str, StringConstraints(pattern=r"^\d{1,10}\.\d{1,9}$")]
SlackId = Annotated[str, StringConstraints(max_length=64)]
# Text Slack may send as null (e.g. some file shares): read as empty, never as a wrong shape.
Text = Annotated[str, BeforeValidator(lambda value: "" if value is None else value)]


def ts_ms(ts: str) -> int:
    """A validated SlackTs in milliseconds (exact: no float on the way)."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds) * 1000 + int((fraction + "000")[:3])


class PayloadError(ValueError):
    """A payload of the wrong shape; `problem` says where, never what was sent."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EditedMessage(_Model):
    """`message` of a message_changed event: the message as edited (`previous_message`: before)."""

    user: SlackId = ""
    ts: SlackTs | None = None
    thread_ts: SlackTs | None = None
    text: Text = ""
    bot_id: SlackId | None = None
    edited: dict[str, Any] | None = None  # present on a real edit, absent on an unfurl


class SharedFile(_Model):
    """One of a message's `files` (file_share): what file_links.relay_files reads."""

    id: SlackId = ""
    name: str = ""
    title: str = ""
    mimetype: str = ""
    size: int | None = None
    mode: str = ""


class MessageEvent(_Model):
    """A `message` event (channel messages, thread replies, their subtypes)."""

    type: str
    subtype: str | None = None
    channel: SlackId = ""
    user: SlackId = ""
    text: Text = ""
    ts: SlackTs | None = None
    thread_ts: SlackTs | None = None
    bot_id: SlackId | None = None
    bot_profile: dict[str, Any] | None = None
    # Slack Connect: the author's own workspace (user_team), else the event's team.
    user_team: SlackId | None = None
    team: SlackId | None = None
    message: EditedMessage | None = None  # message_changed
    previous_message: EditedMessage | None = None  # message_changed, message_deleted
    deleted_ts: SlackTs | None = None  # message_deleted
    files: list[SharedFile] = []  # file_share (or any message carrying files)

    @property
    def author_team(self) -> str:
        return self.user_team or self.team or ""


class EventHead(_Model):
    """What is read of any event before knowing its type."""

    type: str = ""


class Envelope(_Model):
    """An Events API request body (event_callback, url_verification, app_rate_limited)."""

    type: str = ""
    challenge: str = ""
    event: dict[str, Any] | None = None
    event_id: SlackId = ""
    team_id: SlackId = ""
    minute_rate_limited: int | None = None


class InteractionUser(_Model):
    id: SlackId = ""
    name: str = ""
    username: str = ""
    team_id: SlackId = ""


class ChannelRef(_Model):
    id: SlackId = ""


class Container(_Model):
    channel_id: SlackId = ""
    message_ts: SlackTs | None = None


class MessageRef(_Model):
    ts: SlackTs | None = None


class Action(_Model):
    action_id: str = ""
    value: str = ""


class Interaction(_Model):
    """A Block Kit interaction payload (block_actions: the root's buttons, the take-over button)."""

    type: str = ""
    user: InteractionUser = InteractionUser()
    channel: ChannelRef | None = None
    container: Container | None = None
    message: MessageRef | None = None
    actions: list[Action] = []

    @property
    def channel_id(self) -> str:
        return (self.channel.id if self.channel else "") or (
            self.container.channel_id if self.container else ""
        )

    @property
    def message_ts(self) -> str:
        return (
            (self.message.ts if self.message else None)
            or (self.container.message_ts if self.container else None)
            or ""
        )


def _problem(error: ValidationError, prefix: str) -> str:
    """First problem as `field.path: message` (pydantic's message names the expected type, not the value)."""
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    return f"{where}: {first['msg']}"


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, prefix: str = "") -> M:
    """`data` as `model`, or PayloadError."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise PayloadError(_problem(e, prefix)) from None
