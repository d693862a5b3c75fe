"""Typed response models of the HTTP API (pydantic, shown in the OpenAPI schema at ``/docs``).

The records are those of ``simmim-deploy predict``; the server answers through these models so
the schema and the answers cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer (the Open Inference Protocol's error body too)."""

    error: str = Field(description="What was wrong, in one line.")


class TopClass(BaseModel):
    label: str = Field(description="Class name from the bundle.")
    index: int = Field(description="Class index (the model's output position).")
    score: float = Field(description="Softmax probability.")


class Box(BaseModel):
    xyxy: list[float] = Field(
        min_length=4, max_length=4, description="x1, y1, x2, y2 in original-image pixels."
    )
    score: float = Field(description="Detection score in [0, 1].")
    label: str = Field(description="Class name from the bundle.")
    index: int = Field(description="Class index.")


class ClassificationResult(BaseModel):
    path: str = Field(description="The uploaded file's name ('body' for a raw body).")
    width: int = Field(description="Width of the upright (EXIF-rotated) image.")
    height: int
    topk: list[TopClass] = Field(description="Best classes first.")


class DetectionResult(BaseModel):
    path: str
    width: int
    height: int
    boxes: list[Box] = Field(description="Boxes with score >= conf, best first.")


class ImageFailure(BaseModel):
    """One image of the request that could not be read; the others still get results."""

    path: str
    error: str = Field(description="Why the image could not be read (not an image, truncated...).")


class PredictResponse(BaseModel):
    """One record per image, in upload order."""

    results: list[ClassificationResult | DetectionResult | ImageFailure]


class Health(BaseModel):
    # Backends may report more facts; "model_name" is ours, not pydantic's namespace.
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    status: str
    task: str
    model_name: str | None
    input_hw: list[int]
    num_classes: int
    backend: dict[str, Any] = Field(description="What actually runs (library, providers...).")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error codes a route can answer."""
    meaning = {
        400: "Malformed request or tensor",
        401: "Missing or wrong bearer token",
        404: "Unknown model or version",
        413: "Body or image too large",
        415: "Unsupported content type",
        422: "No image in the request could be read",
        503: "Queue full; retry later",
        504: "No answer within --timeout",
    }
    return {code: {"model": ErrorBody, "description": meaning[code]} for code in codes}
