"""POST /colorize and POST /saliency: an uploaded image in, an image of the same size out."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from model.hints import Hint, HintError, parse_hints
from service.deps import StateDep
from service.encoding import OutputFormat
from service.exceptions import ClientDisconnected, InvalidHints, InvalidOptions, UploadTimedOut
from service.http_errors import validation_message
from service.inference import Rendered, run_image_request
from service.schemas import (
    ERROR_RESPONSES,
    HINTS_FIELD,
    HINTS_FORM_SCHEMA,
    ColorizeOptions,
    ErrorResponse,
    RenderOptions,
)
from service.state import ServiceState
from service.upload import read_upload, wait_for_disconnect

router = APIRouter(tags=["images"])

OptionsT = TypeVar("OptionsT", bound=RenderOptions)


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``{"$ref": "#/$defs/X"}`` replaced by ``defs["X"]`` (openapi_extra is not re-referenced)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline_refs(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(value, defs) for value in node]
    return node


def _form_field_schema(field: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A form field's schema: the query parameter's, without ``null`` (an absent field is the default)."""
    field = _inline_refs(field, defs)
    variants = [v for v in field.pop("anyOf", []) if v.get("type") != "null"]
    field.pop("default", None)
    if len(variants) == 1:
        field.update(variants[0])
    elif variants:
        field["anyOf"] = variants
    return field


def _request_body(options: type[RenderOptions], extra_fields: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI for the body the routes parse themselves (multipart ``file`` + option fields, or a raw image).

    The option fields carry the same constraints as the query parameters, so the
    schema says exactly which form values are accepted (others are 422). ``extra_fields``:
    form-only fields (the colour hints).
    """
    model_schema = options.model_json_schema()
    defs: dict[str, Any] = model_schema.get("$defs", {})
    properties: dict[str, Any] = {"file": {"type": "string", "format": "binary", "description": "The image."}}
    for name, field in model_schema["properties"].items():
        properties[name] = _form_field_schema(field, defs)
        properties[name]["description"] = f"Same as the query parameter. {field.get('description', '')}".strip()
    properties.update(extra_fields or {})
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": properties}},
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


def _image_responses(description: str, media_types: tuple[str, ...]) -> dict[int | str, dict[str, Any]]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        200: {
            "description": description + " Headers X-Batch-Size, X-Queue-Wait-Ms, X-Inference-Ms, X-Total-Ms and "
            "Server-Timing tell how it was computed.",
            "content": dict.fromkeys(media_types, binary),
        },
        **ERROR_RESPONSES,
    }


def _merge_options(query: OptionsT, fields: dict[str, str]) -> OptionsT:
    """Query options overridden by form fields of the same name, validated together (422 when invalid)."""
    known = {k: v for k, v in fields.items() if k in type(query).model_fields}
    if not known:
        return query
    try:
        return type(query).model_validate({**query.model_dump(exclude_unset=True), **known})
    except ValidationError as exc:
        raise InvalidOptions(validation_message(exc.errors())) from exc


def _hints(state: ServiceState, request: Request, fields: dict[str, str]) -> list[Hint]:
    """The request's colour hints (the form field ``hints``, absent or blank: none); :class:`InvalidHints` (422) says what is wrong.

    Whether each point lies inside the image is checked once the image is decoded and oriented.
    """
    if HINTS_FIELD in request.query_params:
        raise InvalidHints(f"send hints as the multipart form field '{HINTS_FIELD}', not in the query string")
    text = fields.get(HINTS_FIELD, "")
    if not text.strip():  # a blank form field (as Swagger UI and HTML forms send) is no hints
        return []
    try:
        hints = parse_hints(text, limit=state.settings.max_hints)
    except HintError as exc:
        raise InvalidHints(str(exc)) from exc
    if hints and not state.runtime.colorizer.takes_hints:
        raise InvalidHints("this checkpoint takes no colour hints (GET /v1/model: takes_hints is false); send none")
    return hints


def _image_response(rendered: Rendered, stem: str) -> Response:
    t = rendered.timings
    media_type = rendered.encoded.media_type
    extension = "jpg" if media_type == OutputFormat.JPEG.media_type else media_type.split("/", 1)[1]
    headers = {
        "X-Batch-Size": str(rendered.batch_size),
        "X-Render-Size": str(rendered.render_size),
        "X-Preprocess-Ms": f"{t.preprocess_ms:.2f}",
        "X-Queue-Wait-Ms": f"{t.queue_ms:.2f}",
        "X-Inference-Ms": f"{t.inference_ms:.2f}",
        "X-Postprocess-Ms": f"{t.postprocess_ms:.2f}",
        "X-Total-Ms": f"{t.total_ms:.2f}",
        "Server-Timing": (
            f"preprocess;dur={t.preprocess_ms:.2f}, queue;dur={t.queue_ms:.2f}, "
            f"inference;dur={t.inference_ms:.2f}, postprocess;dur={t.postprocess_ms:.2f}, total;dur={t.total_ms:.2f}"
        ),
        "Cache-Control": "no-store",
        "Content-Disposition": f'inline; filename="{stem}.{extension}"',
    }
    if rendered.encoded.alpha_flattened:
        headers["X-Alpha-Flattened"] = "true"
    return Response(rendered.encoded.data, media_type=media_type, headers=headers)


async def _handle(request: Request, state: ServiceState, query: OptionsT, *, saliency: bool) -> Response:
    started_at: float = getattr(request.state, "started_at", time.monotonic())
    # In flight at SIGTERM = arrived before it: admitted and served.
    with state.admission(arrived_at=started_at, saliency=saliency) as admission:
        budget = started_at + state.settings.request_timeout_s - time.monotonic()
        try:
            async with asyncio.timeout(budget):
                upload = await read_upload(
                    request, max_bytes=state.settings.max_upload_bytes, max_hints=state.settings.max_hints
                )
        except TimeoutError as exc:
            raise UploadTimedOut(
                f"the upload did not arrive within the request timeout of {state.settings.request_timeout_s:g} s"
            ) from exc
        except ClientDisconnect as exc:  # the client went away mid-upload: its doing (499), not a server error
            raise ClientDisconnected("the client disconnected before its upload was complete") from exc
        try:
            options = _merge_options(query, upload.fields)
            hints = [] if saliency else _hints(state, request, upload.fields)
            rendered = await run_image_request(
                state,
                admission,
                upload.source,
                options,
                saliency=saliency,
                started_at=started_at,
                disconnected=lambda: wait_for_disconnect(request),
                hints=hints,
            )
        finally:
            await upload.close()
    return _image_response(rendered, "saliency" if saliency else "colorized")


@router.post(
    "/colorize",
    summary="Colorize an image",
    description="Upload an image (multipart field `file`, or the raw bytes with an `image/*` content type). "
    "The answer has the input's size and orientation (EXIF applied), its alpha channel (PNG/WebP) and its luma; "
    "only the chroma is predicted. Reads JPEG, PNG, WebP, BMP, TIFF and GIF (first frame). "
    "With a checkpoint that takes them (GET /v1/model: `takes_hints`), the multipart field `hints` carries "
    "colour hints: points of the image and the colour each should have.",
    response_class=Response,
    responses=_image_responses("The colour image.", tuple(f.media_type for f in OutputFormat)),
    openapi_extra=_request_body(ColorizeOptions, {HINTS_FIELD: HINTS_FORM_SCHEMA}),
)
async def colorize(request: Request, state: StateDep, query: Annotated[ColorizeOptions, Query()]) -> Response:
    return await _handle(request, state, query, saliency=False)


@router.post(
    "/saliency",
    summary="Predicted saliency map",
    description="The generator's saliency map as a grayscale PNG of the input's size. "
    "501 when the loaded checkpoint has no saliency branch.",
    response_class=Response,
    responses={
        **_image_responses("The saliency map (grayscale PNG).", ("image/png",)),
        501: {"model": ErrorResponse, "description": "The checkpoint has no saliency branch."},
    },
    openapi_extra=_request_body(RenderOptions),
)
async def saliency(request: Request, state: StateDep, query: Annotated[RenderOptions, Query()]) -> Response:
    return await _handle(request, state, query, saliency=True)


__all__ = ["router"]
