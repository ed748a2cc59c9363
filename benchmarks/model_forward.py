"""Forward-pass benchmark of the SCGAN generator's inference path; prints a markdown table.

For each width (the published one and a compact one) it counts the FLOPs of one
256 x 256 image (``torch.utils.flop_counter``, convolutions and matmuls, on the
meta device so counting costs nothing) and times, per batch size:

* CPU: fp32 (folded spectral norm, the production path), fp32 channels_last,
  bf16 autocast, and the unfolded spectral-norm network doing one power iteration
  on every call as the reference code does (spectral-norm modules in training
  mode, BatchNorm in eval mode);
* CUDA, when present: fp32, fp32 channels_last, fp16 and bf16 autocast
  (channels_last), and the unfolded spectral-norm network.

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
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import Generator, GeneratorConfig, fold_spectral_norm  # noqa: E402
from model.layers import SpectralNorm  # noqa: E402

WIDTHS: dict[str, GeneratorConfig] = {
    "published": GeneratorConfig(),
    "compact": GeneratorConfig(start_channels=16, latent_channels=32, global_channels=16),
}
SIZE = 256


@dataclass(frozen=True)
class Variant:
    name: str
    unfolded: bool = False  # time the spectral-norm network with a power iteration per call
    channels_last: bool = False
    autocast: torch.dtype | None = None


CPU_VARIANTS = (
    Variant("fp32 (folded)"),
    Variant("fp32 channels_last", channels_last=True),
    Variant("bf16 autocast", autocast=torch.bfloat16),
    Variant("fp32 unfolded SN, power iteration per call", unfolded=True),
)
CUDA_VARIANTS = (
    Variant("fp32 (folded)"),
    Variant("fp32 channels_last", channels_last=True),
    Variant("fp16 autocast, channels_last", channels_last=True, autocast=torch.float16),
    Variant("bf16 autocast, channels_last", channels_last=True, autocast=torch.bfloat16),
    Variant("fp32 unfolded SN, power iteration per call", unfolded=True),
)


@dataclass(frozen=True)
class Cell:
    width: str
    device: str
    variant: str
    batch: int
    seconds: float  # median per call
    runs: int
    gflop_per_image: float
    max_abs_diff: float | None

    @property
    def ms_per_image(self) -> float:
        return 1000.0 * self.seconds / self.batch

    @property
    def gflops(self) -> float:
        return self.gflop_per_image * self.batch / self.seconds


def gflop_per_image(config: GeneratorConfig) -> float:
    """FLOPs of the inference path (folded, no saliency branch) for one 256 x 256 image, counted on meta."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = fold_spectral_norm(Generator(config, with_saliency=False).eval())
        x = torch.empty(1, config.in_channels, SIZE, SIZE)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.predict(x)
    return counter.get_total_flops() / 1e9


def build_networks(config: GeneratorConfig, device: torch.device) -> tuple[Generator, Generator]:
    """(folded inference net, unfolded net with spectral-norm modules in training mode, BN in eval)."""
    torch.manual_seed(0)
    unfolded = Generator(config, with_saliency=False, spectral_norm=True).eval()
    folded = fold_spectral_norm(copy.deepcopy(unfolded))
    for module in unfolded.modules():
        if isinstance(module, SpectralNorm):
            module.train()  # one power iteration per call, stored, as the reference does in every mode
    return folded.to(device), unfolded.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _mode(variant: Variant, device: torch.device) -> Iterator[None]:
    # The unfolded network writes its power-iteration vectors: no_grad, not inference_mode.
    grad_ctx = torch.no_grad() if variant.unfolded else torch.inference_mode()
    with grad_ctx:
        if variant.autocast is None:
            yield
        else:
            with torch.autocast(device_type=device.type, dtype=variant.autocast):
                yield


def _timed(call: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    out = call()
    _sync(device)
    return time.perf_counter() - start, out


def run(args: argparse.Namespace) -> list[Cell]:
    """Time every variant at every batch size.

    Within a batch size the variants take turns, one timed call each per round, so
    that a change in load on a shared machine hits all of them alike.
    """
    device = torch.device(args.device)
    variants = CUDA_VARIANTS if device.type == "cuda" else CPU_VARIANTS
    cells: list[Cell] = []
    for width in args.widths:
        config = WIDTHS[width]
        gflop = gflop_per_image(config)
        folded, unfolded = build_networks(config, device)
        nets = {
            v.name: (
                unfolded if v.unfolded
                else copy.deepcopy(folded).to(memory_format=torch.channels_last) if v.channels_last
                else folded
            )
            for v in variants
        }
        per_image: dict[str, float] = {}  # from the previous batch size, to skip needless warm-ups
        reference: torch.Tensor | None = None  # fp32 folded output at the first batch size
        for batch in args.batch_sizes:
            active = [v for v in variants if not v.unfolded or args.sn_all_batches or batch == args.batch_sizes[0]]
            x = torch.rand(batch, config.in_channels, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))
            x = x.to(device)
            calls: dict[str, Callable[[], torch.Tensor]] = {}
            for v in active:
                xv = x.contiguous(memory_format=torch.channels_last) if v.channels_last else x

                def call(net: Generator = nets[v.name], xv: torch.Tensor = xv, v: Variant = v) -> torch.Tensor:
                    with _mode(v, device):
                        return net.predict(xv)

                calls[v.name] = call
            outputs: dict[str, torch.Tensor] = {}
            for v in active:
                # A warm-up call that would take longer than the budget is skipped (see the module docstring).
                if v.name not in per_image or per_image[v.name] * batch <= args.budget:
                    for _ in range(args.warmup):
                        outputs.setdefault(v.name, calls[v.name]())
                        _sync(device)
            times: dict[str, list[float]] = {v.name: [] for v in active}
            for _ in range(args.repeats):
                for v in active:
                    if times[v.name] and sum(times[v.name]) >= args.budget:
                        continue
                    seconds, out = _timed(calls[v.name], device)
                    times[v.name].append(seconds)
                    outputs.setdefault(v.name, out)
            for v in active:
                seconds = statistics.median(times[v.name])
                per_image[v.name] = seconds / batch
                diff = None
                if batch == args.batch_sizes[0]:
                    out = outputs[v.name].float().cpu()
                    if reference is None:
                        reference = out
                    diff = float((out - reference).abs().max())
                cells.append(Cell(width, device.type, v.name, batch, seconds, len(times[v.name]), gflop, diff))
                print(f"  {width:9s} {v.name:44s} b={batch}: {1000 * seconds / batch:9.1f} ms/image", file=sys.stderr)
        del folded, unfolded, nets
    return cells


def render(cells: Sequence[Cell], args: argparse.Namespace) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs ({cpu}), load average at start {args.load_at_start}",
        "",
        "GFLOP per 256x256 image (inference path, convolutions): "
        + ", ".join(f"{w} {c.gflop_per_image:.2f}" for w, c in {c.width: c for c in cells}.items()),
        "",
        "| width | device | variant | batch | ms/image (median) | images/s | GFLOP/s | runs | max abs diff vs fp32 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        diff = "" if c.max_abs_diff is None else f"{c.max_abs_diff:.1e}"
        lines.append(
            f"| {c.width} | {c.device} | {c.variant} | {c.batch} | {c.ms_per_image:.1f} | "
            f"{1000.0 / c.ms_per_image:.2f} | {c.gflops:.1f} | {c.runs} | {diff} |"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", nargs="+", choices=tuple(WIDTHS), default=list(WIDTHS))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    p.add_argument("--repeats", type=int, default=3, help="timed calls per cell at most (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per cell")
    p.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per cell before stopping early")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="cpu, cuda[:N] or auto (CUDA when present)")
    p.add_argument("--sn-all-batches", action="store_true", help="time the unfolded network at every batch size")
    args = p.parse_args(argv)
    if any(b < 1 for b in args.batch_sizes) or args.repeats < 1 or args.warmup < 0 or args.budget <= 0:
        p.error("batch sizes and repeats must be >= 1, warmup >= 0, budget > 0")
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
    cells = run(args)
    print(render(cells, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
