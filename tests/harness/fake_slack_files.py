"""Slack's external file upload, for the fake Slack: files.getUploadURLExternal, the upload itself (a
POST of the bytes to the returned upload_url, which the fake serves on its own port), then
files.completeUploadExternal, which shares the file into a channel or thread.

Arguments and errors as Slack documents them (shared/slack-api-specs/methods/files.*.json). The bytes
are kept, so a test reads back exactly what the bridge uploaded (`uploaded()`). Beyond the docs, the
fake refuses an upload whose size differs from the `length` announced (HTTP 400), and a second
completion of the same file (file_not_found): a bridge relying on either would break on Slack too.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.harness.fake_slack import FakeSlack

MAX_ALT_TXT_CHARS = 1000
MAX_SNIPPET_BYTES = 1024 * 1024
SNIPPET_TYPES = frozenset({"text", "python", "javascript", "json", "yaml", "markdown", "shell", "csv"})
UPLOAD_PATH = "/upload/v1/{file_id}"
# The upload step has no Slack method name: faults and recorded calls name it this.
UPLOAD_CALL = "upload"


@dataclass
class SlackUpload:
    """One file, from its upload URL to its share in a channel."""

    file_id: str
    filename: str
    length: int
    title: str = ""
    snippet_type: str | None = None
    content: bytes | None = None  # None until the bytes were POSTed to the upload URL
    channel: str | None = None  # where completeUploadExternal shared it
    thread_ts: str | None = None
    initial_comment: str | None = None
    completed: bool = False
    deleted: bool = False  # files.delete

    @property
    def text(self) -> str:
        return (self.content or b"").decode()


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class FileUploads:
    """Mixed into FakeSlack: its three upload steps and what tests read back."""

    _file_ids = itertools.count(1)

    def uploaded(
        self: FakeSlack, channel: str | None = None, thread_ts: str | None = None
    ) -> list[SlackUpload]:
        """Files shared by completeUploadExternal (in `channel` / that thread), oldest first."""
        return [
            u
            for u in self.uploads.values()
            if u.completed
            and (channel is None or u.channel == channel)
            and (thread_ts is None or u.thread_ts == thread_ts)
        ]

    def add_upload_route(self: FakeSlack, app: web.Application) -> None:
        app.router.add_post(UPLOAD_PATH, self._upload)

    def _files_get_upload_url_external(self: FakeSlack, params: dict[str, Any], now: float) -> dict[str, Any]:
        filename, length = params.get("filename"), _int(params.get("length"))
        if not filename or params.get("length") in (None, ""):
            return {"ok": False, "error": "invalid_arguments"}
        if length is None or length < 0:
            return {"ok": False, "error": "invalid_arguments"}
        if length == 0:
            return {"ok": False, "error": "missing_argument"}
        snippet_type = params.get("snippet_type") or None
        if snippet_type is not None and snippet_type not in SNIPPET_TYPES:
            return {"ok": False, "error": "unknown_snippet_type"}
        if snippet_type is not None and length > MAX_SNIPPET_BYTES:
            return {"ok": False, "error": "snippet_too_large"}
        if len(str(params.get("alt_txt") or "")) > MAX_ALT_TXT_CHARS:
            return {"ok": False, "error": "alt_txt_too_large"}
        file_id = f"F0FAKE{next(self._file_ids):06d}"
        self.uploads[file_id] = SlackUpload(file_id, str(filename), length, snippet_type=snippet_type)
        return {
            "ok": True,
            "upload_url": f"{self.base_url}{UPLOAD_PATH.format(file_id=file_id)}",
            "file_id": file_id,
        }

    async def _upload(self: FakeSlack, request: web.Request) -> web.Response:
        """The upload URL: the raw bytes as the body, or a multipart form with a `file` part."""
        received = time.monotonic()
        file_id = request.match_info["file_id"]
        if request.content_type == "multipart/form-data":
            form = await request.post()
            part = form.get("file") or form.get("filename")
            content = part.file.read() if hasattr(part, "file") else str(part or "").encode()
        else:
            content = await request.read()
        status, text = self._upload_answer(file_id, content, received)
        self.calls.append(self._call_record(file_id, len(content), received, status, text))
        return web.Response(status=status, text=text)

    def _upload_answer(self: FakeSlack, file_id: str, content: bytes, now: float) -> tuple[int, str]:
        for fault in self._status_faults:
            if fault.methods is not None and fault.matches(UPLOAD_CALL, now):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault.status, fault.error
        upload = self.uploads.get(file_id)
        if upload is None or upload.completed:
            return 404, "Not Found"
        if len(content) != upload.length:
            return 400, f"length mismatch: announced {upload.length}, received {len(content)}"
        upload.content = content
        return 200, f"OK - {len(content)}"

    @staticmethod
    def _call_record(file_id: str, size: int, at: float, status: int, text: str) -> Any:
        from tests.harness.fake_slack import SlackCall

        return SlackCall(UPLOAD_CALL, {"file_id": file_id, "bytes": size}, at, status, {"text": text})

    def _files_complete_upload_external(
        self: FakeSlack, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        files = params.get("files")
        if isinstance(files, str):
            try:
                files = json.loads(files)
            except ValueError:
                return {"ok": False, "error": "invalid_arguments"}
        if (
            not isinstance(files, list)
            or not files
            or not all(isinstance(f, dict) and f.get("id") for f in files)
        ):
            return {"ok": False, "error": "invalid_arguments"}
        uploads = [self.uploads.get(str(f["id"])) for f in files]
        if any(u is None or u.content is None or u.completed for u in uploads):
            return {"ok": False, "error": "file_not_found"}
        channel = str(params.get("channel_id") or "") or None
        if channel is not None and (error := self._share_error(channel)):
            return {"ok": False, "error": error}
        thread_ts = str(params.get("thread_ts") or "") or None
        comment = params.get("initial_comment") or None
        shared = []
        for spec, upload in zip(files, uploads, strict=True):
            assert upload is not None
            upload.title = str(spec.get("title") or upload.filename)
            upload.channel, upload.thread_ts, upload.initial_comment = channel, thread_ts, comment
            upload.completed = True
            shared.append({"id": upload.file_id, "title": upload.title})
        if channel is not None:
            # In the channel, a message's files are file objects: their name too.
            objects = [{**spec, "name": self.uploads[spec["id"]].filename} for spec in shared]
            self._share_message(channel, thread_ts, comment, objects, now)
        return {"ok": True, "files": shared}

    def _files_delete(self: FakeSlack, params: dict[str, Any], now: float) -> dict[str, Any]:
        """As Slack (web-api files.delete): the bot deletes what it uploaded; another user's file is
        cant_delete_file, an unknown id file_not_found, a second delete file_deleted."""
        file_id = str(params.get("file") or "")
        upload = self.uploads.get(file_id)
        if upload is None:
            return {"ok": False, "error": "cant_delete_file" if file_id in self.files else "file_not_found"}
        if upload.deleted:
            return {"ok": False, "error": "file_deleted"}
        upload.deleted, upload.content = True, None
        return {"ok": True}

    def _share_error(self: FakeSlack, channel: str) -> str | None:
        info = self.conversations.get(channel)
        if info is None or (info.private and not info.member):
            return "channel_not_found"
        if not info.member:
            return "not_in_channel"
        if info.archived:
            return "posting_to_channel_denied"
        return None

    def _share_message(
        self: FakeSlack,
        channel: str,
        thread_ts: str | None,
        comment: Any,
        files: list[dict[str, Any]],
        now: float,
    ) -> None:
        """The file share as it appears in the channel (or thread): a bot message carrying the files."""
        from tests.harness.fake_slack import SlackMessage

        message = SlackMessage(
            channel=channel,
            ts=self._next_ts(),
            text=str(comment or ""),
            at=now,
            thread_ts=thread_ts,
            params={"files": files},
        )
        self.channels.setdefault(channel, []).append(message)
