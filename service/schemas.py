"""Request options and JSON response shapes (they also document the API in /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from model.config import SIZE_MULTIPLE
from model.pipeline import CHROMA_GAIN_MAX, CHROMA_GAIN_MIN
from service.encoding import OutputFormat

_FORMAT_ALIASES = {"jpg": "jpeg", "jpe": "jpeg"}


class RenderOptions(BaseModel):
    """Options every image route takes (POST /saliency takes only these)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    render_size: int | None = Field(
        default=None,
        ge=SIZE_MULTIPLE,
        multiple_of=SIZE_MULTIPLE,
        description=f"Working resolution of the generator, a multiple of {SIZE_MULTIPLE} (default: the model's), "
        "at most the deployment's `limits.max_render_size` (GET /v1/model); larger: 422.",
    )


class ColorizeOptions(RenderOptions):
    """Options of POST /colorize, from the query string or form fields (a form field wins)."""

    format: OutputFormat | None = Field(
        default=None,
        description="Output format. Default: the input's format when it is png, jpeg or webp, else png. "
        "JPEG has no alpha: transparent areas are flattened onto white.",
    )
    quality: int | None = Field(
        default=None, ge=1, le=100, description="JPEG/WebP quality (default 90; WebP 100 = lossless); PNG ignores it."
    )
    chroma_gain: float = Field(
        default=1.0,
        ge=CHROMA_GAIN_MIN,
        le=CHROMA_GAIN_MAX,
        allow_inf_nan=False,
        description="Vividness: the predicted chroma times this factor. 0 returns the gray input, 1 (default) the "
        "model's colours, 2 twice their saturation (pixels that would leave the RGB range are desaturated "
        "just enough to fit). Outside [0, 2]: 422.",
    )

    @field_validator("format", mode="before")
    @classmethod
    def _normalise_format(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().lower()
            value = value.removeprefix("image/")
            return _FORMAT_ALIASES.get(value, value)  # "" stays invalid: the schema's enum has no empty value
        return value


#: The multipart form field of POST /colorize that carries colour hints.
HINTS_FIELD = "hints"

#: OpenAPI of that field: a string holding a JSON array (parsed by :func:`model.hints.parse_hints`). Plain text,
#: not ``contentMediaType``: Swagger UI offers a file chooser for that.
HINTS_FORM_SCHEMA: dict[str, Any] = {
    "type": "string",
    "default": "[]",  # what an absent field means; Swagger UI's try-it-out would otherwise fill in "string"
    "description": "Colour hints, for a checkpoint that takes them (GET /v1/model: takes_hints): a JSON array of "
    '{"x": X, "y": Y, "color": "#rrggbb"}, e.g. [{"x": 120, "y": 80, "color": "#1f4fd0"}]. X and Y are integer '
    "pixel coordinates in the uploaded image as displayed (after its EXIF orientation), origin at the top left. "
    "Only the colour's chroma is used; the photo keeps its own luma. An empty array, or a blank field, is no hints. 422 (code "
    "invalid_hints) for bad JSON or a wrong shape, a point outside the image, a colour that is not #rrggbb, "
    "more than limits.max_hints hints, or any hint for a checkpoint that takes none. Multipart only.",
}


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. 'queue_full'.")
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    model_loaded: bool
    warmed_up: bool
    worker_running: bool
    worker_stalled: bool = Field(
        default=False, description="One forward has run longer than request_timeout_s (ready again when it returns)."
    )
    draining: bool
    workers_ready: int | None = Field(
        default=None, description="Several workers (SCGAN_WORKERS): how many are ready; ready needs all of them."
    )
    workers: int | None = Field(default=None, description="Several workers: how many serve this port.")


class CheckpointDescription(BaseModel):
    name: str
    sha256: str
    source_format: str
    metadata: dict[str, Any]


class BatchingDescription(BaseModel):
    max_batch_size: int
    max_batch_delay_ms: float
    queue_capacity: int
    request_timeout_s: float


class LimitsDescription(BaseModel):
    max_upload_bytes: int
    max_pixels: int
    max_render_size: int
    max_hints: int = Field(description="Most colour hints one POST /colorize may carry (SCGAN_MAX_HINTS).")


class ModelDescription(BaseModel):
    """What GET /v1/model reports."""

    checkpoint: CheckpointDescription
    config: dict[str, Any]
    task: str
    has_saliency: bool
    takes_hints: bool = Field(
        description="Whether the checkpoint takes colour hints (POST /colorize's form field `hints`); "
        "when false, any hint is a 422."
    )
    device: str
    precision: str
    compiled_batch_sizes: list[int] = Field(
        description="Batch sizes at render_size that run a torch.compile'd graph (a smaller batch is padded up to "
        "the next); empty: every forward is eager (SCGAN_COMPILE)."
    )
    working_resolution: int
    render_size: int
    batching: BatchingDescription
    limits: LimitsDescription
    version: dict[str, str]


#: OpenAPI description of the error answers every image route can give.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "No file, empty body, or a corrupt/truncated image."},
    408: {"model": ErrorResponse, "description": "The upload did not arrive within the request timeout."},
    413: {"model": ErrorResponse, "description": "Upload over max_upload_bytes or image over max_pixels."},
    415: {"model": ErrorResponse, "description": "Not an image, or a format the service does not read."},
    422: {"model": ErrorResponse, "description": "Invalid option values, or colour hints that cannot be used."},
    500: {"model": ErrorResponse, "description": "The batch failed; quote request_id."},
    503: {"model": ErrorResponse, "description": "Queue full, not ready, or shutting down; see Retry-After."},
    504: {"model": ErrorResponse, "description": "Timed out waiting for the model; not computed."},
}


__all__ = [
    "ERROR_RESPONSES",
    "HINTS_FIELD",
    "HINTS_FORM_SCHEMA",
    "BatchingDescription",
    "CheckpointDescription",
    "ColorizeOptions",
    "ErrorDetail",
    "ErrorResponse",
    "Health",
    "LimitsDescription",
    "ModelDescription",
    "Readiness",
    "RenderOptions",
]
