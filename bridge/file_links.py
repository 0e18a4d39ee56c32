"""Files agents share in a handover thread, relayed to the user as links served by the bridge.

A link is `<BRIDGE_PUBLIC_URL>/files/<token>`, token = `<file id>.<expiry, unix s>.<signature>`, where
signature = base64url(HMAC-SHA256(key, "<file id>.<expiry>")) and key = HMAC-SHA256(BRIDGE_REPLY_SECRET,
"bridge file links v1"): the reply secret is already shared with the owner's backend only, and the
derived key never signs anything else. Nothing is stored: the token alone says which file, until when.
Pure module (no aiohttp, no redis); web.py serves the link, slack_events.py decides what is relayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

_FILE_ID = re.compile(r"F[A-Z0-9]{2,30}")
_EXPIRY = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes "²"
_KEY_LABEL = b"bridge file links v1"


@dataclass(frozen=True, slots=True)
class FileLinks:
    key: bytes
    public_url: str  # without a trailing slash

    @classmethod
    def create(cls, reply_secret: str, public_url: str) -> FileLinks:
        key = hmac.new(reply_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()
        return cls(key, public_url.rstrip("/"))

    def _signature(self, file_id: str, expires_s: int) -> str:
        digest = hmac.new(self.key, f"{file_id}.{expires_s}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def url(self, file_id: str, expires_s: int) -> str:
        return f"{self.public_url}/files/{file_id}.{expires_s}.{self._signature(file_id, expires_s)}"

    def file_of(self, token: str, now_s: float) -> str | None:
        """The file id a token was made for, or None: malformed, forged or expired alike."""
        file_id, _, rest = token.partition(".")
        expires, _, signature = rest.partition(".")
        if not (_FILE_ID.fullmatch(file_id) and _EXPIRY.fullmatch(expires)):
            return None
        given = signature.encode("utf-8", "surrogateescape")  # (a path that is not UTF-8: no match)
        if not hmac.compare_digest(given, self._signature(file_id, int(expires)).encode()):
            return None
        return file_id if int(expires) > now_s else None


def _size(size: int) -> str:
    mib = size / (1024 * 1024)
    return f"{mib:.1f} MiB" if mib >= 1 else f"{max(size // 1024, 1)} KiB"


def relay_files(
    files: list[dict[str, Any]],
    *,
    links: FileLinks | None,
    max_bytes: int,
    expires_s: int,
) -> tuple[list[dict[str, Any]], list[str]]:
    """What agent_message's `files` carries ({"id", "name", "mimetype", "size", "url"}), and why each
    other file is not relayed (one line each, for the agent)."""
    relayed: list[dict[str, Any]] = []
    refused: list[str] = []
    for file in files:
        name = str(file.get("name") or file.get("title") or file.get("id") or "a file")
        size = file.get("size")
        unreadable = file.get("mode") in ("tombstone", "hidden_by_limit")
        if unreadable or not _FILE_ID.fullmatch(str(file.get("id") or "")):
            refused.append(f"{name}: Slack does not let the bridge read this file")
        elif links is None:
            refused.append(f"{name}: file links are off (BRIDGE_PUBLIC_URL is not set)")
        elif isinstance(size, int) and size > max_bytes:
            refused.append(f"{name}: {_size(size)} is over the {_size(max_bytes)} limit")
        else:
            relayed.append(
                {
                    "id": file["id"],
                    "name": name,
                    "mimetype": str(file.get("mimetype") or "application/octet-stream"),
                    "size": size if isinstance(size, int) else None,
                    "url": links.url(file["id"], expires_s),
                }
            )
    return relayed, refused
