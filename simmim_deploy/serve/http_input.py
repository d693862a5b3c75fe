"""Reading a predict request safely: bounded body, multipart or raw image, clear 4xx errors."""

from __future__ import annotations

import hmac
from typing import Any

from simmim_deploy.serve.images import ImageError, ImageTooLarge


class ApiError(Exception):
    """An HTTP error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def check_token(request: Any, token: str | None) -> None:
    """401 unless the request carries ``Authorization: Bearer <token>`` (when a token is set)."""
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token.strip()):
        raise ApiError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


def image_error_status(exc: ImageError) -> int:
    """413 for too many pixels (decompression bombs included), 422 for anything undecodable."""
    return 413 if isinstance(exc, ImageTooLarge) else 422


async def read_body(request: Any, limit: int) -> bytes:
    """Read the body, refusing (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad Content-Length header")
        if int(declared) > limit:
            raise ApiError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked upload without a Content-Length
            raise ApiError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def extract_images(request: Any, body: bytes, max_images: int) -> list[tuple[str, bytes]]:
    """``(name, encoded bytes)`` of every image in the request.

    Accepts ``multipart/form-data`` with one or more file fields named ``images``, or a raw
    image body (``image/*``, ``application/octet-stream`` or no content type).
    """
    from starlette.requests import Request

    if not body:
        raise ApiError(400, "empty request: send an image (raw body or multipart field 'images')")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    # curl --data-binary sends x-www-form-urlencoded unless told otherwise: take it as raw bytes.
    raw = ("", "application/octet-stream", "application/x-www-form-urlencoded")
    if ctype in raw or ctype.startswith("image/"):
        return [("body", body)]
    if ctype != "multipart/form-data":
        raise ApiError(
            415, f"unsupported content type {ctype!r}: use multipart/form-data or an image body"
        )

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(
            max_files=max_images, max_fields=max_images
        )
    except Exception as exc:  # noqa: BLE001 - starlette raises several parser errors
        raise ApiError(400, f"malformed multipart body: {exc}") from None
    items = form.getlist("images")
    if not items:
        fields = ", ".join(sorted(set(form.keys()))) or "none"
        raise ApiError(422, f"multipart field 'images' is missing (fields sent: {fields})")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            raise ApiError(422, "field 'images' must be a file upload, not text")
        out.append((item.filename or f"image_{i}", await item.read()))
        await item.close()
    return out
