"""Cold and warm compile per shape: the torch.compile path with inductor's own cache, against AOTInductor packages.

For each batch size of the service's defaults (the bundled checkpoint at its render size, the
default precision), four fresh processes, one after the other:

* ``inductor cold``: ``torch.compile`` with weight freezing and the C++ wrapper (the compiled path
  before the compile cache), ``TORCHINDUCTOR_CACHE_DIR`` an empty folder; seconds to the end of the
  first (compiling) call, and inductor's FX-graph cache counters.
* ``inductor warm``: the same, again, on that now-filled folder.
* ``aoti cold``: :meth:`model.Colorizer.compile` with an empty ``cache_dir`` (export, AOTInductor
  build, save, load, check against eager).
* ``aoti warm``: the same on that folder (load only).

Each row also times the compiled forward (best of 5 after 2 untimed calls). Run:
``python benchmarks/compile_cache.py`` (several minutes on 2 cores); writes
``benchmarks/results/compile_cache.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _measure(mode: str, batch: int, folder: str) -> dict[str, Any]:
    """In this (fresh) process: compile or load one shape, time it and its forward."""
    import torch

    from model import Colorizer, default_checkpoint_path
    from model.device import autocast

    path = default_checkpoint_path()
    if path is None:
        raise SystemExit("the bundled checkpoint is missing")
    colorizer = Colorizer.from_checkpoint(path, device="cpu", batch_size=batch)
    size = colorizer.render_size
    x = torch.rand(batch, colorizer.in_channels, size, size, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=torch.channels_last)
    result: dict[str, Any] = {"precision": colorizer.precision, "render_size": size}
    if mode == "inductor":
        import torch._inductor.config as inductor_config
        from torch._dynamo.utils import counters

        net = colorizer.generator
        graph = torch.compile(lambda t: net(t, return_saliency=False)[0], dynamic=False, fullgraph=True)

        def call(t: torch.Tensor) -> torch.Tensor:
            with (
                inductor_config.patch(freezing=True, cpp_wrapper=True),
                autocast(colorizer.device, colorizer.precision),
            ):
                return graph(t)

        began = time.perf_counter()
        with torch.inference_mode():
            call(x)
        result["seconds"] = time.perf_counter() - began
        result["fx_graph_cache"] = {
            k.removeprefix("fxgraph_cache_"): v
            for k, v in counters["inductor"].items()
            if k.startswith("fxgraph_cache")
        }
    else:
        report = colorizer.compile([batch], cache_dir=Path(folder))
        if report.failed:
            raise SystemExit(f"compiling failed: {report.failed}")
        result["seconds"] = report.seconds
        result["loaded"] = bool(report.loaded)

        def call(t: torch.Tensor) -> torch.Tensor:
            return colorizer.predict(t)[0]

    with torch.inference_mode():
        for _ in range(2):
            call(x)
        times = []
        for _ in range(5):
            began = time.perf_counter()
            call(x)
            times.append(time.perf_counter() - began)
    result["forward_ms"] = 1000 * min(times)
    return result


def _run_child(mode: str, batch: int, folder: str) -> dict[str, Any]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(folder) / "inductor"), "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(batch), folder],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{mode} batch {batch} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| batch | path | start | compile or load (s) | forward (ms) | inductor FX-graph cache |",
        "|---:|---|---|---:|---:|---|",
    ]
    for r in rows:
        fx = ", ".join(f"{k} {v}" for k, v in sorted(r.get("fx_graph_cache", {}).items())) or "-"
        lines.append(
            f"| {r['batch']} | {r['path']} | {r['start']} | {r['seconds']:.1f} | {r['forward_ms']:.0f} | {fx} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=RESULTS / "compile_cache")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "BATCH", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, batch, folder = args.child
        print(json.dumps(_measure(mode, int(batch), folder)))
        return 0
    rows: list[dict[str, Any]] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = os.getloadavg()
    for batch in args.batch_sizes:
        for path in ("inductor", "aoti"):
            with tempfile.TemporaryDirectory(prefix="scgan-bench-cache-") as folder:
                for start in ("cold", "warm"):
                    result = _run_child(path, batch, folder)
                    row = {"batch": batch, "path": path, "start": start, **result}
                    rows.append(row)
                    print(_table([row]).splitlines()[-1], flush=True)
    meta = {
        "date": started,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "precision": rows[0]["precision"],
        "render_size": rows[0]["render_size"],
    }
    table = _table(rows)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(
        "# Compile cache: cold and warm per shape (`python benchmarks/compile_cache.py`)\n\n"
        f"{meta['date']}, {meta['machine']}, load average {meta['load_average_before']} before and "
        f"{meta['load_average_after']} after (a shared machine: other jobs ran). The bundled checkpoint at "
        f"{meta['render_size']} x {meta['render_size']}, {meta['precision']}, one fresh process per row.\n\n"
        f"{table}\n\n"
        "*inductor*: `torch.compile` with weight freezing and the C++ wrapper, `TORCHINDUCTOR_CACHE_DIR` empty (cold), "
        "then the same folder again (warm). *aoti*: `Colorizer.compile(cache_dir=...)`, the AOTInductor package "
        "(cold: export, build, save, load, check against eager; warm: load).\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
