"""GET /files/<token>: a file an agent shared, streamed from Slack to whoever holds the link.

The token (file_links.py) is checked before anything else: a bad, forged or expired one gets the
same JSON 404 as an unknown file, and never a byte of it. Slack is asked for the file (files.info:
it may have been deleted since), then its url_private_download is streamed through with the bot
token, never buffered whole and never beyond replies.max_file_bytes.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web

from .runtime import BRIDGE, Bridge
from .slack_api import SlackApi, SlackFailure
from .web import error, guarded

log = structlog.get_logger("bridge.files")

CHUNK_BYTES = 64 * 1024


async def file_download(request: web.Request) -> web.StreamResponse:
    bridge: Bridge = request.app[BRIDGE]
    links = bridge.app_config.file_links
    file_id = links.file_of(request.match_info["token"], time.time()) if links else None
    if file_id is None:  # (the token is a credential: never logged)
        log.warning("file_link_refused", status=404, reason="bad, forged or expired link")
        return error(404, "not found")
    max_bytes = bridge.config().replies.max_file_bytes
    try:
        info = await bridge.slack.file_info(file_id)
    except SlackFailure as e:
        if e.permanent:  # file_not_found, file_deleted...
            log.warning("file_link_refused", status=404, file=file_id, reason=e.reason)
            return error(404, "not found")
        log.warning("file_unavailable", status=503, file=file_id, reason=e.reason)
        return error(503, "Slack unavailable, retry later")
    url = str(info.get("url_private_download") or "")
    size = info.get("size")
    if not url or (isinstance(size, int) and size > max_bytes):
        log.warning("file_link_refused", status=404, file=file_id, reason="no download or too large")
        return error(404, "not found")
    return await _stream(request, bridge.slack, file_id, url, info, max_bytes)


async def _stream(
    request: web.Request, slack: SlackApi, file_id: str, url: str, info: dict[str, Any], max_bytes: int
) -> web.StreamResponse:
    mimetype = str(info.get("mimetype") or "application/octet-stream")
    name = str(info.get("name") or file_id)
    response = web.StreamResponse(
        headers={
            "Content-Type": mimetype,
            # Served from the bridge's own origin: never rendered there (no HTML or SVG running in it).
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Cache-Control": "private, no-store",
        }
    )
    sent = 0
    try:
        async with slack.download(url) as upstream:
            html = upstream.content_type == "text/html" and mimetype != "text/html"
            if upstream.status != 200 or html:  # Slack's sign-in page is not the file
                log.warning("file_download_failed", status=502, file=file_id, slack_status=upstream.status)
                return error(502, "file unavailable from Slack")
            if upstream.content_length is not None:
                if upstream.content_length > max_bytes:  # files.info said less: never more than the cap
                    log.warning("file_link_refused", status=404, file=file_id, reason="too large")
                    return error(404, "not found")
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
                sent += len(chunk)
                if sent > max_bytes:
                    raise aiohttp.ClientPayloadError("larger than replies.max_file_bytes")
                await response.write(chunk)
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        log.warning("file_download_failed", file=file_id, error=type(e).__name__, sent=sent)
        if not response.prepared:
            return error(502, "file unavailable from Slack")
        if request.transport is not None:  # cut short: the client must see it incomplete
            request.transport.close()
        return response
    await response.write_eof()
    log.info("file_served", file=file_id, bytes=sent)
    return response


def add_file_routes(app: web.Application) -> None:
    app.router.add_get("/files/{token}", guarded(file_download))
