"""Compiled generator forwards for a fixed set of input shapes, eager for every other.

Inductor with weight freezing runs the generator several times faster than eager fp32 on a
2-core CPU with bf16 (figures: ``benchmarks/results/model_forward.md``), but it compiles one
graph per input shape (tens of seconds each on such a CPU) and a dynamic batch dimension trips an
inductor assertion in bf16. So shapes are fixed: :meth:`CompiledForwards.compile`
builds one graph per (batch size, render size, saliency) it is given, ahead of time, and
:meth:`CompiledForwards.run` pads a smaller batch up to the nearest compiled batch size.
Everything else (other render sizes, larger batches, a shape whose compile failed) runs
eagerly, so a request never waits for a compiler and a missing compiler only costs speed.

Each graph is an AOTInductor package (``torch.export`` then ``aoti_compile_and_package`` with
weight freezing, :data:`AOTI_OPTIONS`), kept in a :mod:`model.compile_cache` folder: a later
start, or another worker process, loads it in well under a second instead of compiling again,
and processes that start together never compile the same shape at once (a lock per entry; a
process skips a shape another one is building and comes back to load it). A fresh build is
checked against the eager forward before it is used; a stale, foreign or corrupt entry is
logged in one line and rebuilt. Why packages and not inductor's own caches:
:mod:`model.compile_cache`.
"""

from __future__ import annotations

import logging
import shutil
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from model.compile_cache import CacheEntry, InvalidEntry, cache_key
from model.storage import weights_sha256

_log = logging.getLogger(__name__)

CompileSetting = Literal["auto", "on", "off"]
COMPILE_SETTINGS: tuple[CompileSetting, ...] = get_args(CompileSetting)

#: Inductor settings of every build: weight freezing (constant-fold the weights, prepack them for oneDNN).
AOTI_OPTIONS: dict[str, object] = {"freezing": True}
#: Largest |compiled - eager| (outputs in [0, 1]) a fresh build may show and still be used; per precision.
BUILD_TOLERANCE = {"fp32": 1e-3, "bf16": 0.1, "fp16": 0.05}
#: While a shape compiles, a line says so this often (a cold start is otherwise silent for a minute a shape).
PROGRESS_INTERVAL_S = 15.0

#: (B x C x R x R input, want saliency) -> (RGB, saliency or None), in the network's dtype, on its device.
Forward = Callable[[torch.Tensor, bool], tuple[torch.Tensor, "torch.Tensor | None"]]


def compiler_available(device: torch.device) -> tuple[bool, str]:
    """Whether inductor can build kernels for ``device`` here, and why not when it cannot."""
    if device.type == "cpu":
        import torch._inductor.config as inductor_config

        cxx = inductor_config.cpp.cxx[-1] if inductor_config.cpp.cxx else None
        if not any(candidate and shutil.which(candidate) for candidate in (cxx, "g++", "c++", "clang++")):
            return False, "no C++ compiler on PATH (inductor needs one for CPU kernels)"
        headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
        if not headers.is_file():
            return (
                False,
                f"no Python headers ({headers}; e.g. the python3-dev package), which inductor's kernels include",
            )
        return True, ""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return (True, "") if has_triton() else (False, "Triton is not installed")
    return False, f"torch.compile is not set up for device type {device.type!r}"


def resolve_compile(setting: str, device: torch.device) -> tuple[bool, str]:
    """``on``/``off`` as asked; ``auto`` compiles on CPUs with a C++ compiler (measured faster there).

    On CUDA ``auto`` stays eager: the compiled CUDA path has not been measured yet
    (``on`` compiles it). Returns (compile, the reason when not).
    """
    if setting not in COMPILE_SETTINGS:
        raise ValueError(f"compile must be one of {COMPILE_SETTINGS}, got {setting!r}")
    if setting == "off":
        return False, "compile is off"
    if setting == "auto" and device.type != "cpu":
        return False, f"compile 'auto' compiles on CPU only (device {device.type})"
    available, why = compiler_available(device)
    if not available and setting == "on":
        raise RuntimeError(f"compile 'on' was requested but {why}")
    return available, why


def bucket_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two below ``max_batch_size``, and it: each batch is padded to at most 2x its size."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    sizes = {max_batch_size}
    size = 1
    while size < max_batch_size:
        sizes.add(size)
        size *= 2
    return sorted(sizes)


@dataclass(frozen=True)
class CompiledShape:
    """One compiled graph's input shape."""

    batch_size: int
    render_size: int
    saliency: bool


@dataclass
class CompileReport:
    """What :meth:`CompiledForwards.compile` built or loaded, how long it took, and what failed."""

    compiled: list[CompiledShape] = field(default_factory=list)
    failed: dict[CompiledShape, str] = field(default_factory=dict)
    #: Of ``compiled``, the shapes loaded from the cache (the rest were compiled here).
    loaded: list[CompiledShape] = field(default_factory=list)
    seconds: float = 0.0


@contextmanager
def _cache_root(cache_dir: Path | None) -> Iterator[Path]:
    """``cache_dir``, or a temporary folder for this call only when it is None."""
    if cache_dir is not None:
        yield cache_dir
        return
    with tempfile.TemporaryDirectory(prefix="scgan-compile-") as temporary:
        yield Path(temporary)


def _as_forward(runner: Callable[..., Any], shape: CompiledShape) -> Forward:
    """A loaded package's runner (one input, the outputs as a sequence) as a :data:`Forward` of its shape."""

    def forward(x: torch.Tensor, saliency: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        if saliency != shape.saliency:
            raise ValueError(f"the graph of {shape} was built with saliency={shape.saliency}")
        outputs = runner(x)
        return outputs[0], (outputs[1] if saliency else None)

    return forward


class _Traced(torch.nn.Module):
    """One shape's forward as a module for ``torch.export``: the network under the precision's autocast."""

    def __init__(self, network: torch.nn.Module, saliency: bool, context: Callable[[], AbstractContextManager[object]]):
        super().__init__()
        self.network = network
        self.saliency = saliency
        self.context = context

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with self.context():
            rgb, sal = self.network(x, return_saliency=self.saliency)
        return rgb, sal


@dataclass
class _Progress:
    """Start-up progress lines: which shape, how many remain, the time since compiling began."""

    total: int
    started: float = field(default_factory=time.perf_counter)
    done: int = 0

    def line(self, shape: CompiledShape, what: str) -> None:
        _log.info(
            "compiled forwards: batch %d at %dx%d%s: %s (shape %d of %d, %d more after it, %.1f s elapsed)",
            shape.batch_size,
            shape.render_size,
            shape.render_size,
            " with saliency" if shape.saliency else "",
            what,
            self.done + 1,
            self.total,
            self.total - self.done - 1,
            time.perf_counter() - self.started,
        )

    @contextmanager
    def ticking(self, shape: CompiledShape, what: str) -> Iterator[None]:
        """Repeat ``what`` every :data:`PROGRESS_INTERVAL_S` until the block ends."""
        stop = threading.Event()

        def tick() -> None:
            while not stop.wait(PROGRESS_INTERVAL_S):
                self.line(shape, f"still {what}")

        ticker = threading.Thread(target=tick, name="scgan-compile-progress", daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()


class CompiledForwards:
    """Compiled graphs for chosen shapes, with an eager fallback for the rest.

    ``network(x, return_saliency=...)`` is the eager forward; the caller runs :meth:`run` under
    its precision context, and each graph is built from the same call under the same context
    (``compile``'s ``context``), so both paths compute the same function.
    """

    def __init__(self, network: torch.nn.Module, channels: int) -> None:
        self._network = network
        self._channels = channels
        self._graphs: dict[CompiledShape, Forward] = {}

    def _eager(self, x: torch.Tensor, saliency: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        rgb, sal = self._network(x, return_saliency=saliency)
        return rgb, sal

    @property
    def shapes(self) -> list[CompiledShape]:
        return sorted(self._graphs, key=lambda s: (s.render_size, s.saliency, s.batch_size))

    def compile(
        self,
        batch_sizes: Iterable[int],
        render_size: int,
        *,
        saliency: bool = False,
        device: torch.device,
        precision: str,
        context: Callable[[], AbstractContextManager[object]],
        cache_dir: Path | None = None,
    ) -> CompileReport:
        """Load (from ``cache_dir``) or build one graph per batch size; a failure leaves that shape eager.

        ``context`` is the precision's autocast (no grad mode: the build exports under ``no_grad``).
        ``cache_dir`` None keeps the packages in a temporary folder removed afterwards: nothing is
        shared and the next start compiles again. Shapes another process is building are done last,
        once its lock is released (then they normally load).
        """
        shapes = [CompiledShape(b, render_size, saliency) for b in batch_sizes]
        shapes = [s for s in dict.fromkeys(shapes) if s not in self._graphs]
        report = CompileReport()
        progress = _Progress(len(shapes))
        with _cache_root(cache_dir) as root:
            weights = weights_sha256(self._network.state_dict().items())
            network = f"{type(self._network).__qualname__}:{getattr(self._network, 'config', None)!r}"
            entries = {
                shape: CacheEntry(
                    root,
                    cache_key(
                        weights_sha256=weights,
                        network=network,
                        device=device,
                        precision=precision,
                        shape=(shape.batch_size, self._channels, render_size, render_size),
                        saliency=saliency,
                        options=AOTI_OPTIONS,
                    ),
                )
                for shape in shapes
            }
            deferred: list[CompiledShape] = []
            for shape in shapes:
                with entries[shape].locked(wait=False) as held:
                    if not held:
                        progress.line(shape, "another process is compiling it; coming back to it last")
                        deferred.append(shape)
                        continue
                    self._load_or_build(shape, entries[shape], device, precision, context, report, progress)
            for shape in deferred:
                with entries[shape].locked(wait=True):
                    self._load_or_build(shape, entries[shape], device, precision, context, report, progress)
        report.seconds = time.perf_counter() - progress.started
        return report

    def _load_or_build(
        self,
        shape: CompiledShape,
        entry: CacheEntry,
        device: torch.device,
        precision: str,
        context: Callable[[], AbstractContextManager[object]],
        report: CompileReport,
        progress: _Progress,
    ) -> None:
        """With the entry's lock held: load a valid entry, else build one (checked against eager) and load that."""
        example = torch.zeros(shape.batch_size, self._channels, shape.render_size, shape.render_size, device=device)
        example = example.contiguous(memory_format=torch.channels_last)
        began = time.perf_counter()
        if entry.exists():
            try:
                graph = _as_forward(entry.load(device), shape)
            except InvalidEntry as exc:
                _log.warning("compile cache entry %s %s; rebuilding it", entry.folder, exc)
            else:
                self._graphs[shape] = graph
                report.compiled.append(shape)
                report.loaded.append(shape)
                progress.line(shape, f"loaded from the cache in {time.perf_counter() - began:.1f} s")
                progress.done += 1
                return
        try:
            with entry.compiling(lambda: progress.line(shape, "waiting for another process's compile to finish")):
                progress.line(shape, "compiling")
                with progress.ticking(shape, "compiling"):
                    entry.save(lambda path: self._build(example, shape.saliency, context, path), precision=precision)
                graph = _as_forward(entry.load(device), shape)
                self._check_against_eager(graph, shape, device, precision, context)
        except Exception as exc:  # noqa: BLE001 -- any compiler failure means: this shape runs eagerly
            entry.remove()
            text = str(exc).strip()
            report.failed[shape] = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
            _log.warning("compiling %s failed, it runs eagerly: %s", shape, report.failed[shape])
        else:
            self._graphs[shape] = graph
            report.compiled.append(shape)
            progress.line(shape, f"compiled and cached in {time.perf_counter() - began:.1f} s")
        progress.done += 1

    def _build(
        self,
        example: torch.Tensor,
        saliency: bool,
        context: Callable[[], AbstractContextManager[object]],
        path: Path,
    ) -> None:
        """Export the forward for ``example``'s shape and compile it into an AOTInductor package at ``path``."""
        import torch._inductor

        traced = _Traced(self._network, saliency, context).eval()
        with torch.no_grad():
            program = torch.export.export(traced, (example,))
        torch._inductor.aoti_compile_and_package(program, package_path=str(path), inductor_configs=dict(AOTI_OPTIONS))

    def _check_against_eager(
        self,
        graph: Forward,
        shape: CompiledShape,
        device: torch.device,
        precision: str,
        context: Callable[[], AbstractContextManager[object]],
    ) -> None:
        """Raise when a fresh build's output on a seeded input is grossly off the eager forward's (a wrong graph)."""
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(shape.batch_size, self._channels, shape.render_size, shape.render_size, generator=generator)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), context():
            got = graph(x, shape.saliency)
            want = self._eager(x, shape.saliency)
        worst = max(
            float((g.float().clamp(0, 1) - w.float().clamp(0, 1)).abs().max())
            for g, w in zip(got, want, strict=True)
            if g is not None and w is not None
        )
        limit = BUILD_TOLERANCE.get(precision, BUILD_TOLERANCE["fp32"])
        if worst > limit:
            raise RuntimeError(f"the compiled graph differs from the eager forward by {worst:.3g} (limit {limit:g})")

    def _graph_for(self, batch_size: int, render_size: int, saliency: bool) -> tuple[CompiledShape, Forward] | None:
        best: tuple[CompiledShape, Forward] | None = None
        for shape, graph in self._graphs.items():
            if shape.render_size != render_size or shape.saliency != saliency or shape.batch_size < batch_size:
                continue
            if best is None or shape.batch_size < best[0].batch_size:
                best = (shape, graph)
        return best

    def run(self, x: torch.Tensor, saliency: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The compiled graph of the smallest compiled batch >= len(x) (zero-padded), else eager."""
        found = self._graph_for(x.shape[0], x.shape[-1], saliency) if x.shape[-1] == x.shape[-2] else None
        if found is None:
            return self._eager(x, saliency)
        shape, graph = found
        n = x.shape[0]
        if n < shape.batch_size:  # every image is computed independently (BatchNorm is folded), so padding is inert
            pad = x.new_zeros((shape.batch_size - n, *x.shape[1:]))
            x = torch.cat([x, pad])
        x = x.contiguous(memory_format=torch.channels_last)  # the layout the graph was built for
        try:
            rgb, sal = graph(x, saliency)
        except Exception:  # noqa: BLE001 -- a compiled graph that breaks at run time is dropped, not fatal
            _log.exception("the compiled graph for %s failed; that shape runs eagerly from now on", shape)
            self._graphs.pop(shape, None)
            return self._eager(x[:n], saliency)
        return rgb[:n], (sal[:n] if sal is not None else None)


__all__ = [
    "AOTI_OPTIONS",
    "COMPILE_SETTINGS",
    "CompileReport",
    "CompileSetting",
    "CompiledForwards",
    "CompiledShape",
    "bucket_batch_sizes",
    "compiler_available",
    "resolve_compile",
]
