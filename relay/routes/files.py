"""`GET /v1/files/{id}`: an archived file's bytes (API key, or its job's ticket), with ranges.

Files come from providers' results, so they are served as downloads that cannot run in relay's origin:
`nosniff`, a sandboxing CSP, and `Content-Disposition: attachment` unless the type is a plain image, audio
or video type a browser only displays.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from relay.archive import Blob, BlobNotFound, ByteRange, RangeNotSatisfiable
from relay.errors import Conflict, NotFound, ServiceUnavailable
from relay.file_models import FileStatus, blob_key
from relay.routes.common import authorize, services

__all__ = ["disposition", "parse_range", "routes"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
# Displayed, never run: SVG (scripts) and HTML-like types are not here.
_SAFE_IMAGES = frozenset(
    ("image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/x-icon")
)
_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"


def disposition(content_type: str) -> str:
    """`inline` for a plain image, audio or video type; `attachment` for anything else."""
    media = content_type.split(";", 1)[0].strip().lower()
    inline = media in _SAFE_IMAGES or (media.startswith(("audio/", "video/")) and "+" not in media)
    return "inline" if inline else "attachment"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range a `Range` header asks for; None for the whole file (no header, several ranges, or
    one this does not read: RFC 9110 lets a server ignore it). RangeNotSatisfiable past the end."""
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable("", size, size)
        return ByteRange(max(size - suffix, 0)) if size else _unsatisfiable(size)
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        return _unsatisfiable(size)
    return ByteRange(start, int(last) + 1 if last else None)


def _unsatisfiable(size: int) -> ByteRange:
    raise RangeNotSatisfiable("", size, size)


async def get_file(request: Request) -> Response:
    svc = services(request)
    file_id = request.path_params["id"]
    found = await svc.store.get_file(file_id)
    if found is None:
        authorize(request)  # only a key learns that a file does not exist
        raise NotFound(f"no file {file_id!r}", "unknown_file")
    archived, source, job_id = found
    authorize(request, (source, job_id))
    if archived.status != FileStatus.ARCHIVED or archived.bytes is None:
        state = "is not archived yet" if not archived.status.settled else "failed to archive"
        raise Conflict(
            f"file {file_id!r} {state}: {archived.error or 'no bytes stored'}", "file_not_archived"
        )
    if svc.blobs is None or svc.settings.archive is None:
        raise ServiceUnavailable("no [archive] store is configured to serve files from", "no_archive_store")
    content_type = archived.content_type or "application/octet-stream"
    etag = f'"{archived.sha256}"'
    headers = {
        "etag": etag,
        "accept-ranges": "bytes",
        "x-content-type-options": "nosniff",
        "content-security-policy": _CSP,
        "content-disposition": disposition(content_type),
        "cache-control": "private, max-age=86400, immutable",  # a file's bytes never change
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if svc.settings.archive.presigned_redirect:
        url = await svc.blobs.presigned_url(blob_key(file_id), svc.settings.archive.presigned_url_s)
        if url is not None:
            return RedirectResponse(url, status_code=302, headers={"cache-control": "no-store"})
    try:
        byte_range = parse_range(request.headers.get("range"), archived.bytes)
        blob = await svc.blobs.open(blob_key(file_id), byte_range)
    except RangeNotSatisfiable as exc:
        return Response(status_code=416, headers={**headers, "content-range": f"bytes */{exc.size}"})
    except BlobNotFound:
        raise NotFound(f"the bytes of file {file_id!r} are missing from the store", "file_missing") from None
    headers["content-length"] = str(blob.end - blob.start)
    status = 200
    if byte_range is not None:
        status = 206
        headers["content-range"] = f"bytes {blob.start}-{blob.end - 1}/{blob.size}"
    return StreamingResponse(_stream(blob), status_code=status, headers=headers, media_type=content_type)


async def _stream(blob: Blob) -> AsyncIterator[bytes]:
    """The blob's bytes; what the store holds open is released if the client leaves early."""
    try:
        async for chunk in blob:
            yield chunk
    finally:
        await blob.aclose()


routes = [Route("/v1/files/{id}", get_file, methods=["GET"])]
