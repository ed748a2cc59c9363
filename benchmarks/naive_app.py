"""The naive baseline of ``benchmarks/load/``: how most colorization demos serve a model.

One FastAPI route does everything inside the request handler: read the upload,
decode it, ``Colorizer.colorize_one`` (one forward per request, no batching, no
queue), encode the answer. By default the handler is ``async def`` and blocks
the event loop while it computes, so requests are served one at a time, as in
the usual demo; ``--handler sync`` makes it a plain ``def`` that FastAPI runs on
its thread pool (concurrent forwards competing for the cores). Same model as the service: :meth:`service.runtime.ModelRuntime.load` on
the same ``SCGAN_*`` environment (checkpoint, or the seeded fallback; device;
precision; torch threads), and the same encoder settings.

    python benchmarks/naive_app.py --port 8001 [--output-format jpeg] [--handler sync]
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, UploadFile
from fastapi.responses import Response
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import Colorizer
from service.encoding import OutputFormat, encode_image
from service.runtime import ModelRuntime
from service.settings import Settings


def create_naive_app(colorizer: Colorizer, output_format: OutputFormat, *, handler: str = "async") -> FastAPI:
    """``handler="async"``: an ``async def`` route that blocks the event loop (requests one at a time);
    ``"sync"``: a plain ``def`` route, which FastAPI runs on its thread pool (concurrent forwards)."""
    app = FastAPI(title="naive colorization demo")

    def colorize_bytes(data: bytes) -> Response:
        colour = colorizer.colorize_one(Image.open(io.BytesIO(data)))
        return Response(encode_image(colour, output_format).data, media_type=output_format.media_type)

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        return {"ready": True}

    if handler == "async":

        @app.post("/colorize")
        async def colorize(file: UploadFile) -> Response:
            return colorize_bytes(await file.read())

    else:

        @app.post("/colorize")
        def colorize_sync(file: UploadFile) -> Response:
            return colorize_bytes(file.file.read())

    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--output-format", default="jpeg", choices=[f.value for f in OutputFormat])
    parser.add_argument("--handler", choices=("async", "sync"), default="async", help="see create_naive_app")
    args = parser.parse_args(argv)

    settings = Settings()  # SCGAN_* from the environment, as the service reads them
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    colorizer = ModelRuntime.load(settings).colorizer
    colorizer.colorize_one(Image.new("L", (64, 48)))  # warm, as the service warms up before it is ready
    app = create_naive_app(colorizer, OutputFormat(args.output_format), handler=args.handler)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
