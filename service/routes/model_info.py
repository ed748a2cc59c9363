"""GET /v1/model: what is loaded, where it runs, and how requests are batched."""

from __future__ import annotations

import platform

import torch
from fastapi import APIRouter

from service.deps import StateDep
from service.schemas import (
    BatchingDescription,
    CheckpointDescription,
    ErrorResponse,
    LimitsDescription,
    ModelDescription,
)
from service.version import __version__

router = APIRouter(tags=["operations"])


@router.get(
    "/v1/model",
    response_model=ModelDescription,
    summary="The loaded model, device, precision and batching",
    responses={503: {"model": ErrorResponse, "description": "The model is still loading."}},
)
async def model_info(state: StateDep) -> ModelDescription:
    runtime, settings = state.runtime, state.settings
    identity = runtime.identity
    colorizer = runtime.colorizer
    info = colorizer.checkpoint_info
    return ModelDescription(
        checkpoint=CheckpointDescription(
            name=identity.name,
            sha256=identity.sha256,
            source_format=identity.source_format,
            metadata=identity.metadata,
        ),
        config=colorizer.generator.config.to_dict(),
        task=colorizer.task.value,
        has_saliency=colorizer.has_saliency,
        takes_hints=colorizer.takes_hints,
        device=str(colorizer.device),
        precision=colorizer.precision,
        compiled_batch_sizes=runtime.compiled_batch_sizes,
        working_resolution=info.working_resolution if info else colorizer.render_size,
        render_size=colorizer.render_size,
        batching=BatchingDescription(
            max_batch_size=settings.max_batch_size,
            max_batch_delay_ms=settings.max_batch_delay_ms,
            queue_capacity=settings.queue_capacity,
            request_timeout_s=settings.request_timeout_s,
        ),
        limits=LimitsDescription(
            max_upload_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            max_render_size=state.max_render_size,
            max_hints=settings.max_hints,
        ),
        version={"service": __version__, "torch": str(torch.__version__), "python": platform.python_version()},
    )


__all__ = ["router"]
