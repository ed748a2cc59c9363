"""One image request through the three stages: CPU pool -> batch queue -> CPU pool.

1. decode (limits first) and :meth:`~model.Colorizer.prepare` on the CPU pool;
2. the model input waits in the batcher and runs in a shared forward;
3. :meth:`~model.Colorizer.finish` (chroma recombined at full resolution) and
   encoding on the CPU pool; a JPEG answer takes :meth:`~model.Colorizer.finish_ycbcr`,
   the planes a 4:2:0 JPEG stores, when the image allows.

Waiting for stage 2 races the request's deadline, the client's disconnect and
the shutdown deadline: whichever comes first cancels the queued item, so it is
never computed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO, Any

import torch

from model import Colorizer, PreparedImage
from model.hints import Hint, HintError
from service.batcher import Batched, DeadlineExceeded
from service.decoding import DECODE_ERRORS, DecodedImage, decode_image
from service.encoding import Encoded, OutputFormat, encode_image, encode_ycbcr_jpeg
from service.exceptions import ClientDisconnected, CorruptImage, InvalidHints, InvalidOptions, ShuttingDown
from service.logging_setup import request_id_var
from service.runtime import WorkItem
from service.schemas import ColorizeOptions, RenderOptions
from service.state import Admission, ServiceState

_log = logging.getLogger(__name__)

#: What reading a damaged image's metadata or pixels raises inside Colorizer.prepare: what decoding
#: raises, and KeyError from a damaged EXIF block met while applying the orientation.
_PREPARE_ERRORS = (*DECODE_ERRORS, KeyError)

_SAME_AS_INPUT = {"png": OutputFormat.PNG, "jpeg": OutputFormat.JPEG, "webp": OutputFormat.WEBP}


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent in each stage of one request."""

    preprocess_ms: float
    queue_ms: float
    inference_ms: float
    postprocess_ms: float
    total_ms: float


@dataclass(frozen=True)
class Rendered:
    """An answer image and how it was produced."""

    encoded: Encoded
    batch_size: int
    render_size: int
    timings: Timings
    size: tuple[int, int]


@dataclass(frozen=True)
class PreparedUpload:
    """A decoded, pre-processed upload and what its answer should carry over from the input file."""

    decoded_format: str
    icc_profile: bytes | None
    dpi: tuple[float, float] | None
    prepared: PreparedImage


def decode_and_prepare(
    source: bytes | IO[bytes],
    *,
    colorizer: Colorizer,
    render_size: int,
    max_pixels: int,
    reserve: Callable[[int], None] | None = None,
    hints: Sequence[Hint] = (),
) -> PreparedUpload:
    """Stage 1 (CPU pool): decode within the limits, then ``Colorizer.prepare``; damaged files raise domain errors.

    ``reserve`` gets the image's pixel count before its pixels are decoded (:func:`~service.decoding.decode_image`).
    ``hints`` are points of the image as displayed; one outside it is :class:`~service.exceptions.InvalidHints`.
    """
    decoded: DecodedImage = decode_image(source, max_pixels=max_pixels, reserve=reserve)
    try:
        prepared = colorizer.prepare(decoded.image, render_size, hints)
    except HintError as exc:  # a ValueError, so before the decoding errors
        raise InvalidHints(str(exc)) from exc
    except _PREPARE_ERRORS as exc:  # e.g. a damaged EXIF block met while applying the orientation
        raise CorruptImage(f"the {decoded.format.upper()} image cannot be read: {exc}") from exc
    finally:
        decoded.image.close()
    return PreparedUpload(decoded.format, decoded.icc_profile, decoded.dpi, prepared)


def _finish_color(
    colorizer: Colorizer, item: PreparedUpload, rgb: torch.Tensor, output: ColorizeOptions, fmt: OutputFormat
) -> Encoded:
    if fmt is OutputFormat.JPEG and colorizer.can_finish_ycbcr(item.prepared):
        # A 4:2:0 JPEG keeps luma and half-resolution chroma: build just those, never the full-size RGB.
        planes = colorizer.finish_ycbcr(item.prepared, rgb, output.chroma_gain)
        return encode_ycbcr_jpeg(planes, quality=output.quality, icc_profile=item.icc_profile, dpi=item.dpi)
    image = colorizer.finish(item.prepared, rgb, output.chroma_gain)
    return encode_image(image, fmt, quality=output.quality, icc_profile=item.icc_profile, dpi=item.dpi)


def _finish_saliency(colorizer: Colorizer, item: PreparedUpload, saliency: torch.Tensor) -> Encoded:
    return encode_image(colorizer.finish_saliency(item.prepared, saliency), OutputFormat.PNG, dpi=item.dpi)


def _output_format(options: ColorizeOptions, input_format: str) -> OutputFormat:
    return options.format or _SAME_AS_INPUT.get(input_format, OutputFormat.PNG)


async def _await_result(
    state: ServiceState,
    future: Future[Batched[torch.Tensor]],
    deadline: float,
    disconnected: Callable[[], Awaitable[None]],
) -> Batched[torch.Tensor]:
    """Wait for a queued item's result, its deadline, the client's disconnect or the shutdown deadline."""
    result = asyncio.wrap_future(future)
    watcher = asyncio.ensure_future(disconnected())
    drained = asyncio.ensure_future(state.drain_expired())
    waiters: set[asyncio.Future[Any]] = {result, watcher, drained}
    try:
        done, _ = await asyncio.wait(
            waiters, timeout=max(0.0, deadline - time.monotonic()), return_when=asyncio.FIRST_COMPLETED
        )
        if result in done:
            return result.result()
        future.cancel()  # dropped before compute unless its batch already started
        if watcher in done:
            raise ClientDisconnected("the client disconnected before its result was ready")
        if drained in done:  # answered before uvicorn cuts the connection at the same deadline
            raise ShuttingDown("the service shut down before this request was computed; retry")
        raise DeadlineExceeded(
            f"no result within the request timeout of {state.settings.request_timeout_s:g} s; the image was not computed"
        )
    finally:
        if not result.done():
            result.cancel()
        watcher.cancel()
        drained.cancel()


def _resolve_render_size(state: ServiceState, options: RenderOptions) -> int:
    """The request's render size, else the model's default; above ``state.max_render_size`` it is a 422."""
    size = options.render_size or state.runtime.colorizer.render_size
    if size > state.max_render_size:
        raise InvalidOptions(f"render_size {size} exceeds the maximum of {state.max_render_size}")
    return size


async def run_image_request(
    state: ServiceState,
    admission: Admission,
    source: bytes | IO[bytes],
    options: RenderOptions,
    *,
    saliency: bool,
    started_at: float,
    disconnected: Callable[[], Awaitable[None]],
    hints: Sequence[Hint] = (),
) -> Rendered:
    """Decode, batch, finish and encode one admitted image. ``started_at`` is the request's arrival (monotonic).

    ``hints`` (colour hints, already parsed) go into the model input; hinted and unhinted inputs batch together.
    """
    colorizer = state.runtime.colorizer
    render_size = _resolve_render_size(state, options)
    deadline = started_at + state.settings.request_timeout_s
    # The pixels are held from the header to the encoded answer: the stretch where the image takes memory.
    with admission.pixels() as reservation:
        with admission.pipeline_slot():
            t0 = time.monotonic()
            with admission.preparing():
                item = await state.run_cpu(
                    decode_and_prepare,
                    source,
                    colorizer=colorizer,
                    render_size=render_size,
                    max_pixels=state.settings.max_pixels,
                    reserve=reservation.hold,
                    hints=hints,
                )
                preprocess_s = time.monotonic() - t0
                work = WorkItem(item.prepared.model_input, render_size, saliency, request_id_var.get())
                future = state.batcher.submit(work, deadline=deadline)
            state.metrics.stage_duration.labels("preprocess").observe(preprocess_s)
            batched = await _await_result(state, future, deadline, disconnected)
        t1 = time.monotonic()
        if saliency:
            encoded = await state.run_cpu(_finish_saliency, colorizer, item, batched.value)
        else:
            output = options if isinstance(options, ColorizeOptions) else ColorizeOptions()
            fmt = _output_format(output, item.decoded_format)
            encoded = await state.run_cpu(_finish_color, colorizer, item, batched.value, output, fmt)
        t2 = time.monotonic()
    state.metrics.stage_duration.labels("postprocess").observe(t2 - t1)
    state.metrics.images.labels("saliency" if saliency else "colorize").inc()
    width, height = item.prepared.size
    state.metrics.pixels.inc(width * height)
    timings = Timings(
        preprocess_ms=preprocess_s * 1e3,
        queue_ms=batched.queue_wait_s * 1e3,
        inference_ms=batched.inference_s * 1e3,
        postprocess_ms=(t2 - t1) * 1e3,
        total_ms=(t2 - started_at) * 1e3,
    )
    _log.debug("batch of %d, timings %s", batched.batch_size, timings)
    return Rendered(encoded, batched.batch_size, render_size, timings, (width, height))


__all__ = ["PreparedUpload", "Rendered", "Timings", "decode_and_prepare", "run_image_request"]
