"""Slack's answers sorted by what a retry can do about them, as Slack's per-method docs list its errors:
transient (retried with backoff), auth (the token or a scope: delivery pauses, a setting must change),
permanent (this entry can never be delivered as it is: dead-lettered) and unknown (retried a few times).
"""

from __future__ import annotations

import re
from typing import Any

from .failure import DeliveryFailure, retry_after_s

# Slack's documented errors, by what a retry can do about them (per-method docs under "Errors").
# Transient: a later try succeeds; retried with backoff.
TRANSIENT_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "message_limit_exceeded",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "timeout",
        "update_failed",
        "external_channel_migrating",
    }
)
# The token or its grants: no entry can be delivered until the owner fixes a setting, so delivery
# pauses for every channel instead of burying entries one by one.
AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "no_permission",
        "ekm_access_denied",
        "org_login_required",
    }
)
# This entry can never be delivered as it is (the channel, the message itself): dead-lettered.
PERMANENT_ERRORS = frozenset(
    {
        # files.getUploadURLExternal / files.completeUploadExternal (the transcript file)
        "file_uploads_disabled",
        "file_uploads_except_images_disabled",
        "file_type_not_allowed",
        "file_upload_size_restricted",
        "storage_limit_reached",
        "snippet_too_large",
        "unknown_snippet_type",
        "alt_txt_too_large",
        "missing_argument",
        "posting_to_channel_denied",
        "channels_limit_exceeded",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "invalid_blocks",
        "invalid_blocks_format",
        "too_many_attachments",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "cannot_reply_to_message",
        "thread_not_found",
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "invalid_metadata_format",
        "invalid_metadata_schema",
        "metadata_too_large",
        "metadata_must_be_sent_from_app",
        "duplicate_channel_not_found",
        "channel_is_archived",
        "not_allowed_token_type",
        "method_deprecated",
        "invalid_arguments",
        "invalid_arg_name",
        "invalid_array_arg",
        "invalid_charset",
        "invalid_form_data",
        "invalid_post_type",
        "missing_post_type",
        "team_access_not_granted",
        "too_many_blocks",
        "invalid_cursor",
        "user_not_found",
        "users_not_found",
        "team_added_to_org",
        "as_user_not_supported",
        "slack_connect_file_link_sharing_blocked",
        "invalid_ts_latest",
        "invalid_ts_oldest",
        "unknown_method",
        "file_not_found",
        "file_deleted",
        "already_reacted",
        "bad_timestamp",
        "thread_locked",
        "not_visible",
        "too_many_reactions",
        "too_many_emoji",
        "invalid_name",
        "no_item_specified",
        "not_reactable",
        "view_too_large",
        "duplicate_external_id",
        "not_found",
        "expired_trigger_id",
        "exchanged_trigger_id",
        "invalid_trigger_id",
        "upload_failed",
        "posting_to_general_channel_denied",
        "channel_type_not_supported",
        "invalid_channel",
        "user_not_in_channel",
        "not_authorized",
        "invalid_scopes",
        "not_enabled",  # views.publish: the app's Home tab is off
    }
)
# Slack's `error` is a short snake_case code. Anything else (an echo of the request, a proxy's page) must
# not become a log field, a dead-letter reason or a metric label (unbounded, and maybe a credential).
_ERROR_CODE = re.compile(r"[a-z0-9_.]{1,64}")


def _error_code(error: Any, status: int) -> str:
    if not error:
        return f"http_{status}"
    return str(error) if _ERROR_CODE.fullmatch(str(error)) else "unrecognized_error"


class SlackFailure(DeliveryFailure):
    """A Slack Web API call that failed. Beyond DeliveryFailure's retry/wait/give-up:
    `auth`: the token or a scope is the problem (AUTH_ERRORS): pause every channel, fix a setting;
    `needed`: the scope Slack said is missing (missing_scope), if it said;
    `unknown`: an error code this bridge does not know: retried delivery.unknown_error_attempts times."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        auth: bool = False,
        needed: str | None = None,
        unknown: bool = False,
    ) -> None:
        super().__init__(reason, permanent=permanent, retry_after_s=retry_after_s)
        self.auth = auth
        self.needed = needed
        self.unknown = unknown

    def fix(self) -> str:
        """Which setting the owner must change, for an auth failure."""
        if self.reason == "missing_scope":
            scope = f"the scope {self.needed}" if self.needed else "the missing scope"
            return f"add {scope} to the Slack app (OAuth & Permissions), reinstall it, update SLACK_BOT_TOKEN"
        return "check SLACK_BOT_TOKEN (the app's Bot User OAuth Token, xoxb-...)"


def classify(status: int, headers: Any, data: dict[str, Any]) -> tuple[str, SlackFailure]:
    """(metrics outcome, failure) for an answer that is not `ok: true`."""
    error = data.get("error")
    if status == 429 or error in ("ratelimited", "rate_limited"):
        return "ratelimited", SlackFailure(
            "ratelimited", retry_after_s=retry_after_s(headers.get("Retry-After"))
        )
    if status >= 500 or status == 408:
        return "server_error", SlackFailure(f"http_{status}")
    if not error:  # not Slack's JSON at all (a proxy's HTML page, an empty body): try again later
        return "not_json", SlackFailure(f"not_json_{status}")
    reason = _error_code(error, status)
    if reason in AUTH_ERRORS:
        needed = data.get("needed")
        return "error", SlackFailure(
            reason, auth=True, needed=str(needed) if isinstance(needed, str) and needed else None
        )
    if reason in TRANSIENT_ERRORS:
        return "error", SlackFailure(reason)
    known = reason in PERMANENT_ERRORS
    return "error", SlackFailure(reason, permanent=known, unknown=not known)
