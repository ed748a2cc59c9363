"""The markdown report and the plot of a run."""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.load.config import MODES, TARGET_GROWTH, TARGET_SHARE, LoadConfig
from benchmarks.load.soak import Soak
from benchmarks.load.sweep import Point


def mib(n: int | None) -> str:
    return f"{n / 2**20:.0f}" if n else "—"


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def saturation(points: Sequence[Point], mode: str) -> Point | None:
    mine = [p for p in points if p.mode == mode]
    return max(mine, key=lambda p: p.throughput) if mine else None


RAW_LABELS = {
    "plain compile": "raw model (plain compile, `benchmarks/plain_compile.py`; no HTTP, no pre/post-processing)",
    "service path": "raw model (`Colorizer.predict`, no HTTP, no pre/post-processing)",
}


def workers_ratio(points: Sequence[Point]) -> dict[str, float]:
    """Per concurrency measured with both: img/s of the default workers (``batched``) over one worker's."""
    one = {p.concurrency: p.throughput for p in points if p.mode == "batched-1w"}
    return {
        str(p.concurrency): p.throughput / one[p.concurrency]
        for p in points
        if p.mode == "batched" and one.get(p.concurrency)
    }


def cpu_table(points: Sequence[Point], ceiling: str) -> list[str]:
    """Server CPU per image against the raw model's (efficiency = raw / service), and the client's CPU."""
    lines = [
        "## CPU per image and efficiency",
        "",
        (
            f"| configuration | clients | img/s | p50 / p99 (ms) | service CPU (ms/img) | raw CPU (ms/img, {ceiling}) "
            "| efficiency (raw ÷ service) | client CPU (ms/img) | client CPU (cores) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        lines.append(
            f"| {MODES[p.mode]} | {p.concurrency} | {p.throughput:.2f} | {p.p50:.0f} / {p.p99:.0f} "
            f"| {_fmt(p.server_cpu_ms_per_img, '.1f')} | {_fmt(p.raw_now_cpu_ms, '.1f')} | {_fmt(p.efficiency, '.0%')} "
            f"| {_fmt(p.client_cpu_ms_per_img, '.1f')} | {_fmt(p.client_cores, '.2f')} |"
        )
    lines += [
        "",
        "`service CPU`: the server process and its child processes (worker processes), user + system, over the "
        "measured window, per answer in it. `raw CPU`: the raw-model helper's CPU over its timed loop per image, "
        "at its fastest batch size, timed just before the point. Efficiency is their ratio, so it holds whatever "
        "the client costs; the client's own CPU (window) is in the last two columns.",
    ]
    ratios = workers_ratio(points)
    if ratios:
        lines += [
            "",
            "Workers (default `SCGAN_WORKERS`, auto, ÷ `SCGAN_WORKERS=1`), img/s: "
            + ", ".join(f"{ratio:.2f}x at {clients} clients" for clients, ratio in ratios.items())
            + ".",
        ]
    return lines


def report(
    points: Sequence[Point],
    raw: dict[str, dict[str, float]],
    stages: dict[str, float],
    info: dict[str, Any],
    peaks: dict[str, int | None],
    soaked: Soak | None,
    config: LoadConfig,
    context: dict[str, Any],
    *,
    raw_cpu: dict[str, dict[str, float]] | None = None,
    raw_service: dict[str, dict[str, float]] | None = None,
) -> str:
    """The markdown report; ``raw``: the ceiling's img/s per run and batch size, ``raw_cpu`` its CPU ms per image,
    ``raw_service``: the service's own path (``img_per_s``, ``cpu_ms_per_img``) when it is not the ceiling."""
    best_raw = {b: max(run.get(b, 0.0) for run in raw.values()) for b in raw["before"]}
    ceiling_batch, ceiling = max(best_raw.items(), key=lambda kv: kv[1])
    ceiling_path = str(info.get("ceiling", "service path"))
    lines = [
        f"# Load benchmark: service vs naive server vs raw model (preset {config.preset})",
        "",
        (
            f"{context['date']} — {context['cpu']}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {info['torch']}; device {info['device']}, precision {info['precision']}, compiled batch sizes "
            f"{info['compiled_batch_sizes'] or 'none (eager)'} (SCGAN_COMPILE={config.compile}), allocator "
            f"{config.malloc.name if config.malloc else 'glibc malloc'}, torch threads "
            f"{info['torch_threads']}; checkpoint `{info['checkpoint']}` ({info['source_format']}; generator "
            f"{info['generator']}), render size {info['render_size']} px. Upload: {config.image_size[0]}x"
            f"{config.image_size[1]} synthetic gray {config.upload_format.upper()} ({context['upload_bytes'] / 1024:.0f} KiB, "
            f"multipart), answers {config.output_format.upper()}. Service settings: defaults (max batch "
            f"{config.max_batch_size} / 1, max delay 5 ms, queue 64, request timeout 30 s). "
            f"{config.duration:g} s per point after a warm-up of at least {config.warmup:g} s; client timeout "
            f"{config.client_timeout:g} s. Load average {context['load_before']} before, {context['load_after']} after."
        ),
        "",
        (
            f"The naive server's route is `{'async def' if config.naive_handler == 'async' else 'def'}`. "
            "The client (one process, httpx + uvloop) and the server under test share the machine's CPUs; "
            "`client CPU` and `other load` (CPU busy in any other process, in cores) say how much of the machine "
            "was not the server's. Figures taken with other load well above 0 are contended: compare rows of "
            "one run only, and rerun on a quiet machine for absolute numbers."
        ),
        "",
        "## Summary",
        "",
        (
            "| configuration | saturation (img/s) | at clients | p50 / p99 there (ms) | raw now (img/s) "
            "| % of raw now | % of raw ceiling | errors / timeouts (whole sweep) | peak RSS (MiB) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, label in MODES.items():
        top = saturation(points, mode)
        if top is None:
            continue
        mine = [p for p in points if p.mode == mode]
        share_now = top.share_of_raw_now
        target = (
            f" ({'meets' if share_now >= TARGET_SHARE else 'below'} the {TARGET_SHARE:.0%} target)"
            if share_now is not None and mode == "batched"
            else ""
        )
        lines.append(
            f"| {label} | {top.throughput:.2f} | {top.concurrency} | {top.p50:.0f} / {top.p99:.0f} "
            f"| {_fmt(top.raw_now, '.2f')} | {_fmt(share_now, '.0%')}{target} | {top.throughput / ceiling:.0%} "
            f"| {sum(p.errors for p in mine)} / {sum(p.timeouts for p in mine)} | {mib(peaks.get(mode))} |"
        )
    lines.append(
        f"| {RAW_LABELS.get(ceiling_path, ceiling_path)} | {ceiling:.2f} | batch {ceiling_batch} | — | — | — | 100% "
        "| — | — |"
    )
    lines += [
        "",
        "`raw now`: the raw model's best img/s over the batch sizes, timed in the seconds just before that point "
        "(this CPU's speed drifts by tens of percent within minutes, so a point is compared with the model as fast "
        "as it was then); `raw ceiling`: the best raw figure of the whole run.",
    ]
    if soaked is not None:
        verdict = "meets" if soaked.growth < TARGET_GROWTH else "above"
        lines += [
            "",
            (
                f"**Memory soak** ({MODES['batched']}): {soaked.requests} requests from {soaked.concurrency} clients in "
                f"{soaked.seconds:.0f} s ({soaked.ok} ok, {soaked.errors} errors, {soaked.timeouts} timeouts); RSS "
                f"{mib(soaked.rss_start)} MiB after a warm-up, {mib(soaked.rss_max)} MiB at most, "
                f"{mib(soaked.rss_end)} MiB at the end: **{soaked.growth:+.1%}** ({verdict} the "
                f"< {TARGET_GROWTH:.0%} target). RSS at each quarter of the soak (MiB): "
                f"{' -> '.join(mib(rss) for rss in soaked.rss_quarters)}."
            ),
        ]
    lines += ["", *cpu_table(points, ceiling_path)]
    lines += [
        "",
        "## Concurrency sweep",
        "",
        (
            "| configuration | clients | img/s | p50 (ms) | p99 (ms) | answers | errors | timeouts | raw now "
            "| % of raw now | mean batch | model busy | server CPU (ms/img) | client CPU (cores) | other load (cores) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        per_image = 1e3 * p.server_cpu_s / p.ok_total if p.server_cpu_s is not None and p.ok_total else None
        codes = ", ".join(f"{k}×{v}" for k, v in sorted(p.codes.items()) if k not in ("504", "timeout"))
        lines.append(
            f"| {MODES[p.mode]} | {p.concurrency} | {p.throughput:.2f} | {p.p50:.0f} | {p.p99:.0f} | {p.ok} "
            f"| {p.errors}{f' ({codes})' if codes else ''} | {p.timeouts} | {_fmt(p.raw_now, '.2f')} "
            f"| {_fmt(p.share_of_raw_now, '.0%')} "
            f"| {_fmt(p.mean_batch, '.2f')} | {_fmt(p.model_busy, '.0%')} | {_fmt(per_image, '.0f')} "
            f"| {p.client_cpu_s / p.wall_s:.2f} "
            f"| {_fmt(p.other_cpu_s / p.wall_s if p.other_cpu_s is not None else None, '.2f')} |"
        )
    lines += [
        "",
        (
            "`answers`, `img/s` and the latencies count the measured window; `errors` are non-200 answers (by "
            "status) and transport failures, `timeouts` 504 answers and client time-outs. `server CPU` is the "
            "server's CPU time over the whole point (warm-up and tail included) per successful answer; `model "
            "busy` the share of the point the service's inference thread spent in forwards; `client CPU` and "
            "`other load` are in cores (1.00 = one core busy all the time)."
        ),
        "",
        "## Raw model",
        "",
        f"The ceiling is the {ceiling_path}"
        + (
            " (`torch.compile` of the generator's `predict` with weight freezing, at the service's precision, render "
            "size and batch sizes)"
            if ceiling_path == "plain compile"
            else " (the service compiles nothing, so its own eager forward is the ceiling)"
        )
        + ".",
        "",
        "| path | batch | "
        + " | ".join(f"img/s {when}" for when in raw)
        + " | ms per image (best) | CPU ms per image (before) |",
        "|---|---:|" + "---:|" * len(raw) + "---:|---:|",
    ]
    cpu_before = (raw_cpu or {}).get("before", {})
    for b in raw["before"]:
        runs = " | ".join(_fmt(run.get(b), ".2f") for run in raw.values())
        lines.append(f"| {ceiling_path} | {b} | {runs} | {1e3 / best_raw[b]:.1f} | {_fmt(cpu_before.get(b), '.1f')} |")
    if raw_service is not None:
        for b, speed in raw_service["img_per_s"].items():
            blanks = " | ".join([f"{speed:.2f}"] + ["—"] * (len(raw) - 1))
            cpu = _fmt(raw_service["cpu_ms_per_img"].get(b), ".1f")
            lines.append(f"| service path (`Colorizer.predict`) | {b} | {blanks} | {1e3 / speed:.1f} | {cpu} |")
    lines += [
        "",
        "The ceiling is timed before the sweeps and after them (`--raw-after`): this shared CPU's "
        "speed drifts by tens of percent within minutes, so the best of these is the ceiling. `CPU ms per image`: "
        "the raw helper process's CPU time over its timed loop per image.",
        "",
        "One request's work without the service (median ms, one thread): "
        + ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
        + f"; everything but the forward: {sum(v for k, v in stages.items() if not k.startswith('forward')):.1f}"
        " ms per image, which the raw ceiling leaves out and the servers must also spend CPU on.",
        "",
    ]
    return "\n".join(lines)


def plot(points: Sequence[Point], ceiling: float, path: Path, subtitle: str) -> bool:
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    fig, (ax_tp, ax_lat) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for mode, label in MODES.items():
        mine = [p for p in points if p.mode == mode]
        if not mine:
            continue
        xs = [p.concurrency for p in mine]
        ax_tp.plot(xs, [p.throughput for p in mine], marker="o", label=label)
        ax_lat.plot(xs, [p.p99 for p in mine], marker="o", label=label)
    ax_tp.axhline(ceiling, color="black", linewidth=1, label=f"raw model ceiling ({ceiling:.1f} img/s)")
    ax_tp.axhline(TARGET_SHARE * ceiling, color="black", linewidth=1, linestyle="--", label=f"{TARGET_SHARE:.0%} of it")
    ax_tp.set(xlabel="concurrent clients", ylabel="images / s", title="Throughput", ylim=(0, None))
    ax_lat.set(xlabel="concurrent clients", ylabel="p99 latency (ms)", title="p99 latency", yscale="log")
    ax_lat.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax_lat.yaxis.set_major_formatter(ScalarFormatter())
    ax_lat.yaxis.set_minor_formatter(NullFormatter())
    for ax in (ax_tp, ax_lat):
        ax.set_xscale("log", base=2)
        ax.set_xticks(
            sorted({p.concurrency for p in points}), labels=[str(c) for c in sorted({p.concurrency for p in points})]
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(subtitle, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
