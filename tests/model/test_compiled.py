"""Compiled forwards: fixed shapes, padding to the next compiled batch, eager for the rest.

Compiling even a tiny generator takes 30-60 s per shape on this 2-core CPU, so the tests
that really compile are marked slow (``make test-slow``) and share one module-scoped
colorizer, compiled once for batch size 2; the others build with ``tiny_models.ExportCompiler``.
The compile cache has its own tests (test_compile_cache.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch._inductor
from model_test_helpers import make_generator
from tiny_models import ExportCompiler

from model import Colorizer, compiled
from model.compiled import CompiledShape, bucket_batch_sizes, compiler_available, resolve_compile

CPU = torch.device("cpu")
needs_compiler = pytest.mark.skipif(not compiler_available(CPU)[0], reason="no C++ compiler for inductor")


@pytest.mark.parametrize(
    ("largest", "expected"),
    [(1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (4, [1, 2, 4]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8]), (9, [1, 2, 4, 8, 9])],
)
def test_bucket_sizes_pad_each_batch_at_most_to_double(largest: int, expected: list[int]) -> None:
    assert bucket_batch_sizes(largest) == expected
    for batch in range(1, largest + 1):
        padded = min(size for size in expected if size >= batch)
        assert padded < 2 * batch or padded == 1


def test_bucket_sizes_reject_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        bucket_batch_sizes(0)


def test_resolve_compile_settings() -> None:
    assert resolve_compile("off", CPU) == (False, "compile is off")
    on_cuda, why = resolve_compile("auto", torch.device("cuda"))
    assert not on_cuda and "CPU only" in why
    assert resolve_compile("auto", CPU)[0] is compiler_available(CPU)[0]
    with pytest.raises(ValueError, match="compile must be one of"):
        resolve_compile("yes", CPU)


def test_compile_on_without_a_compiler_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled.shutil, "which", lambda _name: None)
    assert compiler_available(CPU) == (False, "no C++ compiler on PATH (inductor needs one for CPU kernels)")
    assert resolve_compile("auto", CPU)[0] is False
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        resolve_compile("on", CPU)


def test_compile_needs_python_headers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(compiled.sysconfig, "get_paths", lambda: {"include": str(tmp_path)})
    available, why = compiler_available(CPU)
    assert not available and "python3-dev" in why


def test_weights_are_frozen_into_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """The build exports one input (the image batch) and asks inductor to freeze the weights into the package.

    Freezing constant-folds the weights and prepacks them for oneDNN, several times faster on a CPU
    (benchmarks/results/model_forward.md); a stand-in compiler records what inductor would be handed.
    """
    compiler = ExportCompiler().install(monkeypatch)
    handed: list[tuple[torch.export.ExportedProgram, dict[str, object]]] = []
    build = compiler.compile_and_package

    def recording(program: torch.export.ExportedProgram, package_path: str, inductor_configs: Any = None) -> str:
        handed.append((program, dict(inductor_configs or {})))
        return build(program, package_path)

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", recording)
    report = _colorizer().compile([1])
    assert report.compiled == [CompiledShape(1, 256, False)]
    ((program, configs),) = handed
    assert configs.get("freezing") is True
    assert len(program.graph_signature.user_inputs) == 1  # the image batch; every weight is a parameter to fold
    assert len(program.graph_signature.inputs_to_parameters) >= 10


def _colorizer(precision: str = "fp32") -> Colorizer:
    return Colorizer(make_generator(seed=4), device="cpu", precision=precision, batch_size=4)


@pytest.fixture(scope="module")
def compiled_pair() -> tuple[Colorizer, Colorizer]:
    """(compiled for batch 2 at 256 px, the same weights eager), fp32."""
    if not compiler_available(CPU)[0]:
        pytest.skip("no C++ compiler for inductor")
    fast = _colorizer()
    report = fast.compile([2])
    assert report.failed == {}
    assert report.compiled == [CompiledShape(2, 256, False)]
    return fast, _colorizer()


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_compiled_forward_matches_eager(compiled_pair: tuple[Colorizer, Colorizer], batch: int) -> None:
    """Batch 1 is padded into the batch-2 graph, 2 runs it, 3 is larger than any graph and runs eagerly."""
    fast, eager = compiled_pair
    x = torch.rand(batch, 1, 256, 256, generator=torch.Generator().manual_seed(batch))
    got, _ = fast.predict(x)
    want, _ = eager.predict(x)
    assert got.shape == want.shape == (batch, 3, 256, 256)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=0)


@pytest.mark.slow
def test_other_shapes_and_saliency_run_eagerly(compiled_pair: tuple[Colorizer, Colorizer]) -> None:
    fast, eager = compiled_pair
    assert fast.compiled_shapes == [CompiledShape(2, 256, False)]
    x = torch.rand(1, 1, 512, 512)
    torch.testing.assert_close(fast.predict(x)[0], eager.predict(x)[0])
    x = torch.rand(1, 1, 256, 256)
    (rgb, sal), (want_rgb, want_sal) = fast.predict(x, saliency=True), eager.predict(x, saliency=True)
    assert sal is not None and want_sal is not None
    torch.testing.assert_close(sal, want_sal)
    torch.testing.assert_close(rgb, want_rgb)


@pytest.mark.slow
def test_a_padded_batch_gives_each_image_its_own_result(compiled_pair: tuple[Colorizer, Colorizer]) -> None:
    """An image padded with zeros into the batch-2 graph gets what it gets beside another image."""
    fast, _ = compiled_pair
    one = torch.rand(1, 1, 256, 256)
    other = torch.rand(1, 1, 256, 256)
    alone, _ = fast.predict(one)
    paired, _ = fast.predict(torch.cat([one, other]))
    torch.testing.assert_close(paired[:1], alone, atol=2e-4, rtol=0)


@pytest.mark.slow
@needs_compiler
def test_bf16_compiled_forward_stays_within_tolerance_of_eager_bf16() -> None:
    fast, eager = _colorizer("bf16"), _colorizer("bf16")
    report = fast.compile([1])
    assert [s.batch_size for s in report.compiled] == [1]
    x = torch.rand(1, 1, 256, 256)
    got, _ = fast.predict(x)
    want, _ = eager.predict(x)
    assert got.dtype == torch.float32
    assert float((got - want).abs().max()) < 0.02  # bf16 keeps 8 bits of mantissa; outputs are in [0, 1]


def test_a_shape_that_fails_to_compile_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*_args: Any, **_kwargs: Any) -> str:
        raise RuntimeError("inductor exploded\nsecond line")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", failing)
    fast, eager = _colorizer(), _colorizer()
    report = fast.compile([1])
    assert report.compiled == [] and report.failed == {CompiledShape(1, 256, False): "RuntimeError: inductor exploded"}
    assert fast.compiled_shapes == []
    x = torch.rand(1, 1, 256, 256)
    torch.testing.assert_close(fast.predict(x)[0], eager.predict(x)[0])


def test_a_graph_that_breaks_at_run_time_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    compiler = ExportCompiler().install(monkeypatch)

    def load_then_break(path: str, device_index: int = -1) -> Callable[..., Any]:
        runner = compiler.load_package(path)
        calls = {"n": 0}

        def run(*args: Any) -> Any:
            calls["n"] += 1
            if calls["n"] > 1:  # the first call is the build's check against eager
                raise RuntimeError("kernel crashed")
            return runner(*args)

        return run

    monkeypatch.setattr(torch._inductor, "aoti_load_package", load_then_break)
    fast, eager = _colorizer(), _colorizer()
    assert fast.compile([2]).compiled == [CompiledShape(2, 256, False)]
    x = torch.rand(1, 1, 256, 256)
    torch.testing.assert_close(fast.predict(x)[0], eager.predict(x)[0])  # the graph raised; eager answered
    assert fast.compiled_shapes == []


def test_compiling_needs_channels_last() -> None:
    colorizer = Colorizer(make_generator(seed=4), device="cpu", channels_last=False)
    with pytest.raises(ValueError, match="channels_last"):
        colorizer.compile([1])
