"""Forward-pass benchmark of the SCGAN generator's inference path; prints a markdown table.

For each width (the published one and a compact one) it counts the FLOPs of one
256 x 256 image (``torch.utils.flop_counter``, convolutions and matmuls, on the
meta device so counting costs nothing) and times, per batch size:

* CPU: fp32 (folded spectral norm, the production path), fp32 channels_last,
  bf16 autocast, and the unfolded spectral-norm network doing one power iteration
  on every call as the reference code does (spectral-norm modules in training
  mode, BatchNorm in eval mode);
* CUDA, when present: fp32, fp32 channels_last, fp16 and bf16 autocast
  (channels_last), and the unfolded spectral-norm network;
* with a checkpoint (width ``checkpoint``) and ``--compile``: the compiled pair, our production
  path (``Colorizer(...).compile([batch])`` then ``Colorizer.predict``) and the plain compile
  (``benchmarks/plain_compile.py``), both at the service's default precision
  (``resolve_precision('auto', device)``) on the same checkpoint. After the table the script
  prints, per batch size, our time per call over the plain compile's (the median of the per-round
  ratios, >1: ours is slower), so a regression of our compiled path shows.
  ``--rows compiled`` times only these two rows (on the default starter checkpoint unless
  ``--checkpoint``), for a quick A/B over several rounds.

Each cell runs ``--warmup`` untimed calls, then up to ``--repeats`` timed calls
(stopping early once ``--budget`` seconds are spent, at least one), and reports
the median; within a batch size the variants take turns call by call, so a change
in load on a shared machine hits them alike. A warm-up call that would itself take
longer than the budget is skipped: kernels are already built at the smaller batch,
and first-call overheads are milliseconds against calls of seconds. The unfolded network is timed at the
smallest batch size only unless ``--sn-all-batches``: its extra cost is per call,
not per image, so that is where it shows most.

    python benchmarks/model_forward.py                     # both widths, a few minutes on 2 cores
    python benchmarks/model_forward.py --widths compact    # seconds
    python benchmarks/model_forward.py --threads 1 --repeats 5 --batch-sizes 1 2 4 8
    python benchmarks/model_forward.py --rows compiled --repeats 20 --budget 30   # ours vs the plain compile

Compiled rows are rebuilt at every batch size after ``torch._dynamo.reset()``: Dynamo caches
compiled code per code object and could otherwise hand one variant's graph (with another's
frozen weights) to the next, and weight freezing is patched on per call, never set for the process.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.forward_variants import (
    BASELINE,
    CPU_VARIANTS,
    CUDA_VARIANTS,
    SIZE,
    WIDTHS,
    Variant,
    build_networks,
    compiled_pair,
    gflop_per_image,
    make_call,
    peak_matmul_gflops,
    sync,
    timed,
)
from model import Generator, GeneratorConfig


@dataclass(frozen=True)
class Cell:
    width: str
    device: str
    variant: Variant
    batch: int
    seconds: float  # median per call
    runs: int
    gflop_per_image: float
    max_abs_diff: float | None
    min_psnr: float | None  # worst real photo, output against the fp32 eager output (dB)

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.seconds / self.batch

    @property
    def gflops(self) -> float:
        return self.gflop_per_image * self.batch / self.seconds


def load_photos(folder: Path, count: int, config: GeneratorConfig) -> torch.Tensor | None:
    """Model inputs (N x C x 256 x 256) of the first ``count`` photos of ``folder``, as the service prepares them."""
    from PIL import Image

    from model import Colorizer
    from model.images import is_image_file

    paths = sorted(p for p in folder.iterdir() if is_image_file(p))[:count]
    if not paths:
        return None
    colorizer = Colorizer(Generator(config, with_saliency=False, spectral_norm=False), device="cpu")
    inputs = []
    for path in paths:
        with Image.open(path) as image:
            inputs.append(colorizer.prepare(image, SIZE).model_input)
    return torch.stack(inputs)


def psnr(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of RGB in [0, 1]."""
    mse = (output.float().clamp(0, 1) - reference.float().clamp(0, 1)).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


def _load_checkpoint(path: Path) -> tuple[Generator, dict[str, torch.Tensor]]:
    from model import load_generator

    net = load_generator(path, device="cpu")
    return net, {k: v for k, v in net.state_dict().items() if not k.startswith("saliency")}


def pair_ratios(rounds: Sequence[dict[str, float]], ours: str, plain: str) -> list[float]:
    """Per round in which both were timed: our seconds per call over the plain compile's."""
    return [r[ours] / r[plain] for r in rounds if ours in r and plain in r]


def run(args: argparse.Namespace) -> tuple[list[Cell], list[str]]:
    """Time every variant at every batch size; the cells, and the lines comparing the compiled pair.

    Within a batch size the variants take turns, one timed call each per round, so
    that a change in load on a shared machine hits all of them alike.
    """
    device = torch.device(args.device)
    ours, plain = compiled_pair(device)
    if args.rows == "compiled":
        variants = [ours, plain]
    else:
        variants = [
            v
            for v in (CUDA_VARIANTS if device.type == "cuda" else CPU_VARIANTS)
            if (args.compile or v.engine != "inductor") and (args.torchscript or v.engine != "torchscript")
        ]
    cells: list[Cell] = []
    comparison: list[str] = []
    for width in args.widths:
        state = None
        checkpoint: Generator | None = None
        width_variants = variants
        if width == "checkpoint":
            checkpoint, state = _load_checkpoint(args.checkpoint)
            config = checkpoint.config
            if args.rows == "all" and args.compile:
                width_variants = [*variants, ours, plain]
        else:
            config = WIDTHS[width]
        gflop = gflop_per_image(config)
        folded, unfolded = build_networks(config, device, state)
        photos = load_photos(args.photos, args.photo_count, config) if state is not None and args.photos else None
        per_image: dict[str, float] = {}  # from the previous batch size, to skip needless warm-ups
        reference: torch.Tensor | None = None  # fp32 eager output at the first batch size
        for batch in args.batch_sizes:
            active = [
                v for v in width_variants if not v.unfolded or args.sn_all_batches or batch == args.batch_sizes[0]
            ]
            x = torch.rand(batch, config.in_channels, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
            x = x.to(device)
            if any(v.compiled for v in active):
                torch._dynamo.reset()  # no compiled code of an earlier batch size or width is reused
            calls: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
            for v in active:
                print(f"  {width:10s} {v.name:44s} b={batch}: preparing", file=sys.stderr)
                calls[v.name] = make_call(v, folded, unfolded, x, device, checkpoint)
            outputs: dict[str, torch.Tensor] = {}
            for v in active:
                # A warm-up call that would take longer than the budget is skipped (see the module docstring),
                # except for compiled engines, whose first call compiles.
                if v.engine != "eager" or v.name not in per_image or per_image[v.name] * batch <= args.budget:
                    for _ in range(max(args.warmup, 1 if v.engine != "eager" else 0)):
                        outputs.setdefault(v.name, calls[v.name](x))
                        sync(device)
            times: dict[str, list[float]] = {v.name: [] for v in active}
            rounds: list[dict[str, float]] = []  # seconds per variant timed in each round
            for _ in range(args.repeats):
                rounds.append({})
                for v in active:
                    if times[v.name] and sum(times[v.name]) >= args.budget:
                        continue
                    seconds, out = timed(functools.partial(calls[v.name], x), device)
                    times[v.name].append(seconds)
                    rounds[-1][v.name] = seconds
                    outputs.setdefault(v.name, out)
            ratios = pair_ratios(rounds, ours.name, plain.name)
            if ratios:
                line = (
                    f"{width}, batch {batch}: ours / plain compile, time per call = {statistics.median(ratios):.3f} "
                    f"(median of {len(ratios)} per-round ratios, range {min(ratios):.3f}-{max(ratios):.3f}; "
                    ">1: ours is slower)"
                )
                comparison.append(line)
                print(f"  {line}", file=sys.stderr)
            fidelity: dict[str, float] = {}
            if photos is not None and batch == args.batch_sizes[-1]:
                chunks = {v.name: [] for v in active}
                for start in range(0, len(photos), batch):
                    chunk = photos[start : start + batch].to(device)
                    if len(chunk) < batch:  # compiled engines were built for this batch size
                        chunk = torch.cat([chunk, chunk[-1:].expand(batch - len(chunk), -1, -1, -1)])
                    for v in active:
                        chunks[v.name].append(calls[v.name](chunk).float().cpu())
                outs = {name: torch.cat(parts)[: len(photos)] for name, parts in chunks.items()}
                ref_name = BASELINE if BASELINE in outs else active[0].name
                fidelity = {name: float(psnr(out, outs[ref_name]).min()) for name, out in outs.items()}
            for v in active:
                seconds = statistics.median(times[v.name])
                per_image[v.name] = seconds / batch
                diff = None
                if batch == args.batch_sizes[0]:
                    out = outputs[v.name].float().cpu()
                    if reference is None:
                        reference = out
                    diff = float((out - reference).abs().max())
                cells.append(
                    Cell(width, device.type, v, batch, seconds, len(times[v.name]), gflop, diff, fidelity.get(v.name))
                )
                print(f"  {width:10s} {v.name:44s} b={batch}: {1000 * seconds / batch:9.1f} ms/image", file=sys.stderr)
        del folded, unfolded
    return cells, comparison


def render(
    cells: Sequence[Cell], peaks: dict[str, float], args: argparse.Namespace, comparison: Sequence[str] = ()
) -> str:
    cpu = platform.processor() or platform.machine()
    baseline = {(c.width, c.batch): c.seconds for c in cells if c.variant.name == BASELINE}
    lines = [
        (
            f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs ({cpu}), load average at start {args.load_at_start}"
        ),
        "",
        "GFLOP per 256x256 image (inference path, convolutions): "
        + ", ".join(f"{w} {c.gflop_per_image:.2f}" for w, c in {c.width: c for c in cells}.items()),
        "",
        f"Peak matrix multiply ({args.peak_size}x{args.peak_size} torch.mm, same threads): "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items()),
        "",
        "| width | device | variant | batch | ms/image (median) | images/s | speed-up vs fp32 eager | GFLOP/s | "
        + "% of peak | runs | max abs diff vs fp32 | worst photo PSNR vs fp32 (dB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        diff = "" if c.max_abs_diff is None else f"{c.max_abs_diff:.1e}"
        fid = "" if c.min_psnr is None else ("exact" if c.min_psnr >= 119 else f"{c.min_psnr:.1f}")
        peak = peaks.get(c.variant.peak_dtype)
        share = "" if not peak else f"{100 * c.gflops / peak:.1f}%"
        base = baseline.get((c.width, c.batch))
        speedup = "" if base is None else f"{base / c.seconds:.2f}x"
        lines.append(
            f"| {c.width} | {c.device} | {c.variant.name} | {c.batch} | {c.ms_per_image:.1f} | "
            f"{1000.0 / c.ms_per_image:.2f} | {speedup} | {c.gflops:.1f} | {share} | {c.runs} | {diff} | {fid} |"
        )
    if comparison:
        lines += ["", "Our compiled path against the plain compile (same process, interleaved call by call):", ""]
        lines += [f"- {line}" for line in comparison]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from model.weights import default_checkpoint_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--widths",
        nargs="+",
        choices=(*WIDTHS, "checkpoint"),
        default=None,
        help="networks timed (default: published and compact; with --rows compiled: checkpoint)",
    )
    p.add_argument(
        "--rows",
        choices=("all", "compiled"),
        default="all",
        help="all variants, or only our compiled path and the plain compile (width checkpoint)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        default=default_checkpoint_path(),
        help="checkpoint timed as width 'checkpoint' (default: the bundled starter checkpoint)",
    )
    p.add_argument(
        "--photos",
        type=Path,
        default=None,
        help="folder of real photos: each variant's output on them is compared with fp32 (PSNR)",
    )
    p.add_argument("--photo-count", type=int, default=16)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    p.add_argument("--repeats", type=int, default=3, help="timed calls per cell at most (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per cell")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per cell before stopping early")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="cpu, cuda[:N] or auto (CUDA when present)")
    p.add_argument("--sn-all-batches", action="store_true", help="time the unfolded network at every batch size")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include torch.compile variants (a C++ compiler is needed on CPU; compiling takes minutes)",
    )
    p.add_argument(
        "--torchscript",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include the TorchScript freeze variant",
    )
    p.add_argument("--peak-size", type=int, default=2048, help="matrix size of the peak matmul measurement")
    p.add_argument("--peak-seconds", type=float, default=2.0)
    args = p.parse_args(argv)
    if args.widths is None:
        args.widths = ["checkpoint"] if args.rows == "compiled" else list(WIDTHS)
    if args.rows == "compiled" and args.widths != ["checkpoint"]:
        p.error("--rows compiled times the checkpoint only (--widths checkpoint)")
    if args.rows == "compiled" and not args.compile:
        p.error("--rows compiled needs --compile")
    if any(b < 1 for b in args.batch_sizes) or args.repeats < 1 or args.warmup < 0 or args.budget <= 0:
        p.error("batch sizes and repeats must be >= 1, warmup >= 0, budget > 0")
    if "checkpoint" in args.widths and (args.checkpoint is None or not args.checkpoint.is_file()):
        p.error("width 'checkpoint' needs --checkpoint (no bundled starter checkpoint was found)")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("CUDA was requested but is not available")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.load_at_start = " / ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    device = torch.device(args.device)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    peaks = {
        name: peak_matmul_gflops(device, dtype, args.peak_size, args.peak_seconds) for name, dtype in dtypes.items()
    }
    cells, comparison = run(args)
    print(render(cells, peaks, args, comparison))
    return 0


if __name__ == "__main__":
    sys.exit(main())
