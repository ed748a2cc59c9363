"""The raw model in a tight loop, no HTTP: the plain compile (the ceiling) and the service's own forward; one request's stages.

The ceiling is :func:`benchmarks.plain_compile.plain_compiled_predict` of the checkpoint the service
loads, at the service's device, precision, render size and batch sizes, whenever the service
compiles (``SCGAN_COMPILE``); when it runs eagerly, the ceiling is its own eager forward. The
service's path (``Colorizer.predict`` on its compiled graphs) is timed as a second row. Every
timing also reports the CPU this process spent per image over its timed loop (``raw CPU ms/img``),
against which the servers' CPU per image is compared (efficiency = raw / service).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.load.config import REPO
from benchmarks.load.workers import serve_commands

CEILING = "plain compile"
SERVICE_PATH = "service path"


def raw_main(upload_path: Path, output_format: str) -> int:
    """The raw-model helper process: answers ``info``, ``throughput`` and ``stages`` commands."""
    import copy
    import statistics

    import torch

    sys.path.insert(0, str(REPO))
    from benchmarks.plain_compile import plain_compiled_predict
    from model import read_generator
    from model.weights import default_checkpoint_path
    from service.decoding import decode_image
    from service.encoding import OutputFormat, encode_image
    from service.runtime import ModelRuntime
    from service.settings import Settings

    settings = Settings()
    if settings.torch_threads is not None:
        torch.set_num_threads(settings.torch_threads)
    runtime = ModelRuntime.load(settings)
    runtime.warm_up(settings.max_batch_size)  # compiles, as the service's warm-up does (SCGAN_COMPILE)
    colorizer = runtime.colorizer
    upload = upload_path.read_bytes()
    fmt = OutputFormat(output_format)
    size = colorizer.render_size
    largest = max(settings.max_batch_size, 1)
    inputs = torch.rand(largest, colorizer.input_channels, size, size, generator=torch.Generator().manual_seed(0))
    forwards: dict[str, Callable[[torch.Tensor], object]] = {SERVICE_PATH: colorizer.predict}
    if runtime.compile_forwards:  # the ceiling: the plain compile of the checkpoint the service loaded
        path = settings.checkpoint or default_checkpoint_path()
        net = read_generator(path)[0] if path is not None else copy.deepcopy(colorizer.generator)
        plain = plain_compiled_predict(net, device=colorizer.device, precision=colorizer.precision)
        forwards[CEILING] = lambda batch: plain(batch).float().clamp(0.0, 1.0).cpu()  # as predict hands it over
    ceiling = CEILING if CEILING in forwards else SERVICE_PATH

    def throughput(batch_sizes: list[int], budget_s: float, path: str) -> dict[str, dict[str, float]]:
        """Images/s and this process's CPU ms per image, per batch size, of one path (``ceiling`` or a name)."""
        forward = forwards[ceiling if path == "ceiling" else path]
        speed: dict[str, float] = {}
        cpu_ms: dict[str, float] = {}
        for b in batch_sizes:
            batch = inputs[:b].clone()
            forward(batch)  # warm (the plain compile's first call per batch size compiles)
            calls = 0
            cpu_start, start = time.process_time(), time.perf_counter()
            while calls < 1 or time.perf_counter() - start < budget_s:
                forward(batch)
                calls += 1
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            speed[str(b)] = b * calls / seconds
            cpu_ms[str(b)] = 1e3 * cpu / (b * calls)
        return {"img_per_s": speed, "cpu_ms_per_img": cpu_ms}

    def stages(repeats: int) -> dict[str, float]:
        """Median ms per image of the work around the forward, one thread, as a request does it."""
        times: dict[str, list[float]] = {
            "decode": [],
            "prepare": [],
            "forward (batch 1)": [],
            "finish": [],
            "encode": [],
        }
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            decoded = decode_image(upload, max_pixels=1 << 30)
            t1 = time.perf_counter()
            prepared = colorizer.prepare(decoded.image)
            t2 = time.perf_counter()
            rgb, _ = colorizer.predict(prepared.model_input[None])
            t3 = time.perf_counter()
            colour = colorizer.finish(prepared, rgb[0])
            t4 = time.perf_counter()
            encode_image(colour, fmt)
            t5 = time.perf_counter()
            for key, (a, b) in zip(times, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5))):
                times[key].append(1e3 * (b - a))
        return {key: statistics.median(values[1:]) for key, values in times.items()}  # first call: warm-up

    def measure(command: dict[str, Any]) -> dict[str, Any]:
        if command["what"] == "info":
            config = colorizer.generator.config
            return {
                "checkpoint": runtime.identity.name,
                "source_format": runtime.identity.source_format,
                "device": str(colorizer.device),
                "precision": colorizer.precision,
                "compiled_batch_sizes": runtime.compiled_batch_sizes,
                "render_size": size,
                "ceiling": ceiling,
                "paths": list(forwards),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "generator": f"start/latent/global = {config.start_channels}/{config.latent_channels}/"
                f"{config.global_channels}, saliency branch {colorizer.has_saliency}",
            }
        if command["what"] == "throughput":
            sizes = [int(b) for b in command["batch_sizes"]]
            return throughput(sizes, float(command["budget_s"]), str(command.get("path", "ceiling")))
        return stages(int(command["repeats"]))

    # On a dedicated thread, as the service's inference worker runs its forwards: under CPU contention,
    # forwards on the main thread can stall far longer in OpenMP's spin-waits (seen with torch 2.14).
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-model")
    return serve_commands(lambda command: thread.submit(measure, command).result())
