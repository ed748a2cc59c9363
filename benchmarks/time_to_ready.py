"""Time to ready: ``scgan-serve`` with its defaults, from process start to the first ``/readyz`` 200.

For each worker count (``SCGAN_WORKERS``, default 1 and 2), a cold start with an empty compile
cache (``SCGAN_COMPILE_CACHE_DIR``, a fresh temporary folder), then a warm start on the folder the
cold one filled. Everything else is the service's default (the bundled checkpoint, compile
``auto``, precision ``auto``, ``max_batch_size`` 4 on a CPU), on a free loopback port. After each
start one image is colorized; the warm start's answer must equal the cold start's, byte for byte.

Run with nothing else of yours running (each cold start compiles for minutes on 2 cores)::

    python benchmarks/time_to_ready.py            # writes benchmarks/results/time_to_ready.md and .json

The startup probes (k8s/) and the compose health checks' start periods are sized from this table
(docs/operations.md, "Start-up time").
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.load.system import free_port  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TIMEOUT_S = 1200.0


def _command() -> list[str]:
    """The installed ``scgan-serve`` beside this interpreter, else ``python -m service`` (the same entry point)."""
    script = Path(sys.executable).parent / "scgan-serve"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "service"]


def _probe_image() -> bytes:
    """A fixed 320 x 240 gray gradient as PNG: the same upload for every start."""
    image = Image.linear_gradient("L").resize((320, 240))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def start_once(workers: int, cache_dir: Path, log_path: Path) -> dict[str, Any]:
    """Start the service, time it to ready, colorize one image, stop it; the measurements."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_")}
    env.update(
        SCGAN_WORKERS=str(workers),
        SCGAN_PORT=str(port),
        SCGAN_COMPILE_CACHE_DIR=str(cache_dir),
        SCGAN_LOG_FORMAT="text",
        PYTHONPATH=str(REPO),
    )
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        began = time.perf_counter()
        process = subprocess.Popen(_command(), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            ready_s = None
            while time.perf_counter() - began < TIMEOUT_S:
                if process.poll() is not None:
                    raise RuntimeError(f"the service exited ({process.returncode}) during start-up; see {log_path}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        ready_s = time.perf_counter() - began
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            if ready_s is None:
                raise RuntimeError(f"not ready within {TIMEOUT_S:g} s; see {log_path}")
            answers = []
            for _ in range(workers * 3):  # new connections: the kernel spreads them over the workers
                response = httpx.post(
                    f"{url}/colorize?format=png", files={"file": ("probe.png", _probe_image(), "image/png")}, timeout=60
                )
                response.raise_for_status()
                answers.append(hashlib.sha256(response.content).hexdigest())
        finally:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    text = log_path.read_text()
    return {
        "workers": workers,
        "ready_s": round(ready_s, 1),
        "answers_sha256": sorted(set(answers)),
        "compiled_lines": len(re.findall(r"compiled and cached in", text)),
        "loaded_lines": len(re.findall(r"loaded from the cache in", text)),
        "waited_lines": len(re.findall(r"another process is compiling it", text)),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| SCGAN_WORKERS | start | time to /readyz 200 (s) | shapes compiled / loaded (all workers) | answer |",
        "|---:|---|---:|---|---|",
    ]
    for r in rows:
        answer = ", ".join(h[:12] for h in r["answers_sha256"])
        lines.append(
            f"| {r['workers']} | {r['start']} | {r['ready_s']:.1f} | {r['compiled_lines']} / {r['loaded_lines']} "
            f"| {answer} |"
        )
    return "\n".join(lines)


def _verdicts(rows: list[dict[str, Any]]) -> list[str]:
    by = {(r["workers"], r["start"]): r for r in rows}
    out = []
    for workers in sorted({r["workers"] for r in rows}):
        cold, warm = by.get((workers, "cold")), by.get((workers, "warm"))
        if cold and warm:
            out.append(
                f"- {workers} worker(s): warm {warm['ready_s']:.1f} s = {warm['ready_s'] / cold['ready_s']:.2f} x cold "
                f"({cold['ready_s']:.1f} s); warm answers {'equal' if warm['answers_sha256'] == cold['answers_sha256'] else 'DIFFER FROM'} "
                "the cold start's"
            )
    if (1, "cold") in by and (2, "cold") in by:
        out.append(f"- cold, 2 workers / 1 worker: {by[(2, 'cold')]['ready_s'] / by[(1, 'cold')]['ready_s']:.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=RESULTS / "time_to_ready")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    loads = [os.getloadavg()]
    logs = Path(tempfile.mkdtemp(prefix="scgan-ttr-logs-"))
    for workers in args.workers:
        cache = Path(tempfile.mkdtemp(prefix="scgan-ttr-cache-"))
        try:
            for start in ("cold", "warm"):
                row = {"start": start, **start_once(workers, cache, logs / f"w{workers}-{start}.log")}
                rows.append(row)
                loads.append(os.getloadavg())
                print(_table([row]).splitlines()[-1], flush=True)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    meta = {
        "date": started,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(_command())),
        "load_average_1min_after_each_start": [round(v[0], 2) for v in loads],
    }
    table, verdicts = _table(rows), _verdicts(rows)
    print(table, *verdicts, sep="\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(
        "# Time to ready (`python benchmarks/time_to_ready.py`)\n\n"
        f"{meta['date']}, {meta['machine']}; `{meta['command']}` with its defaults (the bundled checkpoint, "
        "compile auto, precision auto), `SCGAN_WORKERS` as shown, `SCGAN_COMPILE_CACHE_DIR` an empty folder "
        "for the cold start and the folder it filled for the warm one. Time from process start to the first "
        f"`/readyz` 200. Load average (1 min) before and after each start: {meta['load_average_1min_after_each_start']} "
        "(a shared machine: other jobs ran).\n\n"
        f"{table}\n\n" + "\n".join(verdicts) + "\n\n"
        "*answer*: SHA-256 of `POST /colorize?format=png` of one fixed image, sent 3 times per worker after "
        "ready. *compiled / loaded*: the start-up log's per-shape lines over all workers (3 shapes: batch 1, 2, 4).\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
