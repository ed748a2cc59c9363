"""``torch.compile``-d generator forwards for a fixed set of input shapes, eager for every other.

Inductor with weight freezing runs the generator several times faster than eager fp32 on a
2-core CPU with bf16 (figures: ``benchmarks/results/model_forward.md``), but it compiles one
graph per input shape (tens of seconds each on such a CPU) and a dynamic batch dimension trips an
inductor assertion in bf16. So shapes are fixed: :meth:`CompiledForwards.compile`
builds one graph per (batch size, render size, saliency) it is given, ahead of time, and
:meth:`CompiledForwards.run` pads a smaller batch up to the nearest compiled batch size.
Everything else (other render sizes, larger batches, a shape whose compile failed) runs
eagerly, so a request never waits for a compiler and a missing compiler only costs speed.

Weight freezing must be on while Dynamo *traces*, not only while inductor compiles: Dynamo reads
``torch._inductor.config.freezing`` to decide whether the module's parameters and buffers become
graph constants (which inductor's freezing passes fold and prepack for oneDNN) or graph inputs
(which they cannot touch). ``torch.compile(options={"freezing": True})`` only reaches inductor,
so every weight stayed an input; :data:`COMPILE_CONFIGS` are therefore patched around the
compiling call (``tests/model/test_compiled.py`` checks the traced graph,
``benchmarks/model_forward.py`` times it against a plain compile).
"""

from __future__ import annotations

import logging
import shutil
import sysconfig
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import torch

_log = logging.getLogger(__name__)

CompileSetting = Literal["auto", "on", "off"]
COMPILE_SETTINGS: tuple[CompileSetting, ...] = get_args(CompileSetting)

#: Inductor settings in force while a graph is traced and compiled, tried in order: weight freezing
#: (see above) with the C++ wrapper, which calls the kernels without going through Python on every
#: forward; then freezing alone, should the wrapper fail to build on this host.
COMPILE_CONFIGS: tuple[dict[str, object], ...] = ({"freezing": True, "cpp_wrapper": True}, {"freezing": True})

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
    """What :meth:`CompiledForwards.compile` built, how long it took, and what failed."""

    compiled: list[CompiledShape] = field(default_factory=list)
    failed: dict[CompiledShape, str] = field(default_factory=dict)
    seconds: float = 0.0


class CompiledForwards:
    """Compiled graphs for chosen shapes, with an eager fallback for the rest.

    ``eager`` runs the network under the caller's precision context; each compiled
    graph traces exactly that call, so both paths compute the same function.
    """

    def __init__(self, eager: Forward, channels: int) -> None:
        self._eager = eager
        self._channels = channels
        self._graphs: dict[CompiledShape, Forward] = {}

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
        context: Callable[[], AbstractContextManager[object]],
        backend: str | Callable[..., object] = "inductor",
    ) -> CompileReport:
        """Build (by running once) one graph per batch size; a failure leaves that shape eager.

        ``backend`` is inductor in production; tests pass a recording backend to inspect the traced graph.
        """
        report = CompileReport()
        start = time.perf_counter()
        for batch_size in batch_sizes:
            shape = CompiledShape(batch_size, render_size, saliency)
            if shape in self._graphs:
                continue
            example = torch.zeros(batch_size, self._channels, render_size, render_size, device=device)
            began = time.perf_counter()
            graph, failures = self._compile_one(example, saliency, context, backend)
            if graph is None:
                report.failed[shape] = failures[-1]
                _log.warning("compiling %s failed, it runs eagerly: %s", shape, failures[-1])
                continue
            if failures:
                _log.warning("compiled %s without inductor's C++ wrapper, which failed: %s", shape, failures[0])
            self._graphs[shape] = graph
            report.compiled.append(shape)
            _log.info("compiled %s in %.1f s", shape, time.perf_counter() - began)
        report.seconds = time.perf_counter() - start
        return report

    def _compile_one(
        self,
        example: torch.Tensor,
        saliency: bool,
        context: Callable[[], AbstractContextManager[object]],
        backend: str | Callable[..., object],
    ) -> tuple[Forward | None, list[str]]:
        """The graph of the first :data:`COMPILE_CONFIGS` entry that compiles, and why the ones before failed."""
        import torch._inductor.config as inductor_config

        failures: list[str] = []
        for config in COMPILE_CONFIGS:
            graph = torch.compile(self._eager, backend=backend, dynamic=False, fullgraph=True)
            try:
                with inductor_config.patch(config), context():
                    graph(example.contiguous(memory_format=torch.channels_last), saliency)
            except Exception as exc:  # noqa: BLE001 -- any compiler failure means: try the next config, else eager
                text = str(exc).strip()
                failures.append(f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")
                continue
            return graph, failures
        return None, failures

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
            x = torch.cat([x, pad]).contiguous(memory_format=torch.channels_last)
        try:
            rgb, sal = graph(x, saliency)
        except Exception:  # noqa: BLE001 -- a compiled graph that breaks at run time is dropped, not fatal
            _log.exception("the compiled graph for %s failed; that shape runs eagerly from now on", shape)
            self._graphs.pop(shape, None)
            return self._eager(x[:n], saliency)
        return rgb[:n], (sal[:n] if sal is not None else None)


__all__ = [
    "COMPILE_CONFIGS",
    "COMPILE_SETTINGS",
    "CompileReport",
    "CompileSetting",
    "CompiledForwards",
    "CompiledShape",
    "bucket_batch_sizes",
    "compiler_available",
    "resolve_compile",
]
