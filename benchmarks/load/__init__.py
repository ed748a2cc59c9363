"""Load benchmark: the service with and without batching, a naive server and the raw model, side by side.

One run measures, over a concurrency sweep (default 1, 2, 4, 8, 16, 32 closed-loop clients):

* **batched** -- the service (``python -m service``) with its default settings (dynamic
  batching, ``--max-batch-size``, default the service's: 8 with CUDA, else 4; ``SCGAN_WORKERS``
  unset, so the service picks its number of worker processes);
* **batched-1w** -- the same with ``SCGAN_WORKERS=1``; the report gives the default's img/s
  over this one's at each concurrency (the worker ratio);
* **unbatched** -- the same service with ``SCGAN_MAX_BATCH_SIZE=1``;
* **naive** -- ``benchmarks/naive_app.py``: a minimal FastAPI app that decodes,
  ``colorize_one``-s and encodes inside an ``async def`` handler, one forward per request,
  as most colorization demos serve (``--naive-handler sync``: a plain ``def`` handler on
  FastAPI's thread pool instead);
* **raw model** -- a forward in a tight loop on pre-made inputs, no HTTP and no
  pre/post-processing, at every batch size up to the largest, on a dedicated thread as the
  service's inference worker runs it. When the service compiles (``--compile``) the ceiling is
  the plain compile (``benchmarks/plain_compile.py``) of the same checkpoint at the service's
  precision and render size, and ``Colorizer.predict`` on the service's own compiled graphs is
  a second row; otherwise ``Colorizer.predict`` eagerly is the ceiling. It is measured before the
  sweeps and after them (full run); the best of these counts. Each timing also gives the helper's
  CPU per image. The same process also times one request's stages without the service (decode,
  prepare, forward, finish, encode).

CPU per image: the server's CPU time (user + system of its process and every child process, so a
multi-worker server counts whole) over each measured window, per answer in the window, next to
the raw model's CPU per image timed just before the point; efficiency = raw ÷ service, which
holds whatever the client costs. The client's own CPU per image and the cores it kept busy are
reported beside them. The servers take turns at each concurrency, so a drift in the machine's
speed hits them alike.

Every server runs in its own process on 127.0.0.1 (an ephemeral port), all started in
parallel and measured one at a time (idle servers use no CPU); all load the model the
service would load by default (``SCGAN_CHECKPOINT``, else the bundled checkpoint, else the
seeded random compact generator) or ``--checkpoint``. The clients are an ``httpx`` async
client in a separate process (multipart uploads of a synthetic photo-like 512 x 384 gray
JPEG, answers as JPEG); its CPU time is reported, and so is the CPU used by everything else
on the machine during each point ("other load"): on a small machine the client, the server
and any neighbour share the cores, so read the figures with those columns.

Each point runs for ``--duration`` seconds after a warm-up that lasts at least ``--warmup``
seconds and until every client has had an answer (so the queue has reached its steady
state); the window stretches until it holds at least ``--min-answers`` answers, so slow
configurations still get a figure. Throughput counts the successful answers that arrive
inside the window; latencies
are those answers' (p50, p99); errors are non-200 answers other than 504 and transport
failures; timeouts are 504 answers and client time-outs (``--client-timeout``). A client
pauses 100 ms after an answer that is not a 200, so fast refusals do not turn it into a busy loop.

Memory: the peak RSS (VmHWM) of every server process at the end, and a soak of the
batched service: ``--soak-requests`` (default 2,000) requests from ``--soak-concurrency``
clients after a short warm-up, with the RSS before, at its highest and after (target:
growth < 10%).

Results: a markdown report (printed, and written to ``OUT_DIR/load.md``), the raw figures
(``OUT_DIR/load.json``), a plot of throughput and p99 latency against concurrency
(``OUT_DIR/load.png``, needs matplotlib: ``pip install -e '.[bench]'``) and the servers'
logs (``OUT_DIR/logs/``). ``OUT_DIR`` is ``benchmarks/results`` (``benchmarks/results/quick``
with ``--quick``) unless ``--out-dir`` says otherwise.

    python -m benchmarks.load              # full run (~13 min on 2 cores; quiet machine) -> benchmarks/results/
    python -m benchmarks.load --quick      # smoke run, about a minute -> benchmarks/results/quick/
    python -m benchmarks.load --preset bar # the bar: 8 clients, 1 worker vs default, CPU/img -> results/bar/
    python -m benchmarks.load --preset minute --device cuda   # about a minute (make gpu-check) -> results/minute/
    python -m benchmarks.load --checkpoint my.pt --concurrency 1 8 32 --duration 20
    python -m benchmarks.load --torch-threads 1   # SCGAN_TORCH_THREADS=1 everywhere (shared cores)

Linux only (the CPU and memory figures come from /proc).
"""

from __future__ import annotations

from benchmarks.load.config import MODES, LoadConfig
from benchmarks.load.run import main

__all__ = ["MODES", "LoadConfig", "main"]
