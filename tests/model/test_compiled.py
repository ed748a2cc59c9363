"""torch.compile'd forwards: fixed shapes, padding to the next compiled batch, eager for the rest.

Compiling even a tiny generator takes 20-30 s per shape on this 2-core CPU, so the tests
that really compile are marked slow (``make test-slow``) and share one module-scoped
colorizer, compiled once for batch size 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from model_test_helpers import make_generator

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


def test_weights_are_frozen_into_the_traced_graph() -> None:
    """Dynamo must see freezing on, or every weight becomes a graph input that inductor cannot fold.

    A recording backend stands in for inductor, so this checks what inductor would be handed
    without compiling anything.
    """
    net = make_generator(seed=4).eval()
    traced: list[torch.fx.GraphModule] = []

    def recording_backend(gm: torch.fx.GraphModule, _inputs: list[torch.Tensor]) -> Callable[..., Any]:
        traced.append(gm)
        return gm.forward

    forwards = compiled.CompiledForwards(lambda x, saliency: net(x, return_saliency=saliency), channels=1)
    torch._dynamo.reset()
    report = forwards.compile([1], 256, device=CPU, context=torch.inference_mode, backend=recording_backend)
    assert report.compiled == [CompiledShape(1, 256, False)]
    (graph,) = traced
    ops = [node.op for node in graph.graph.nodes]
    assert ops.count("placeholder") == 1  # the image batch; no weight is an input
    assert ops.count("get_attr") >= sum(1 for _ in net.parameters())


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


def _fake_compile(fail_at_compile: bool) -> Callable[..., Any]:
    """A stand-in for torch.compile whose graph fails while compiling, or on its first real call."""

    def fake(fn: Callable[..., Any], **_kwargs: Any) -> Callable[..., Any]:
        calls = {"n": 0}

        def graph(*args: Any) -> Any:
            calls["n"] += 1
            if fail_at_compile or calls["n"] > 1:
                raise RuntimeError("inductor exploded\nsecond line")
            return fn(*args)

        return graph

    return fake


def test_a_shape_that_fails_to_compile_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled.torch, "compile", _fake_compile(fail_at_compile=True))
    fast, eager = _colorizer(), _colorizer()
    report = fast.compile([1])
    assert report.compiled == [] and report.failed == {CompiledShape(1, 256, False): "RuntimeError: inductor exploded"}
    assert fast.compiled_shapes == []
    x = torch.rand(1, 1, 256, 256)
    torch.testing.assert_close(fast.predict(x)[0], eager.predict(x)[0])


def test_a_failing_cpp_wrapper_falls_back_to_the_python_wrapper(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import torch._inductor.config as inductor_config

    def fake(fn: Callable[..., Any], **_kwargs: Any) -> Callable[..., Any]:
        def graph(*args: Any) -> Any:
            if inductor_config.cpp_wrapper:
                raise RuntimeError("g++: cannot build the wrapper")
            assert inductor_config.freezing
            return fn(*args)

        return graph

    monkeypatch.setattr(compiled.torch, "compile", fake)
    report = _colorizer().compile([1])
    assert report.compiled == [CompiledShape(1, 256, False)] and report.failed == {}
    assert "without inductor's C++ wrapper" in caplog.text and "cannot build the wrapper" in caplog.text


def test_a_graph_that_breaks_at_run_time_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled.torch, "compile", _fake_compile(fail_at_compile=False))
    fast, eager = _colorizer(), _colorizer()
    assert fast.compile([2]).compiled == [CompiledShape(2, 256, False)]
    x = torch.rand(1, 1, 256, 256)
    torch.testing.assert_close(fast.predict(x)[0], eager.predict(x)[0])  # the graph raised; eager answered
    assert fast.compiled_shapes == []


def test_compiling_needs_channels_last() -> None:
    colorizer = Colorizer(make_generator(seed=4), device="cpu", channels_last=False)
    with pytest.raises(ValueError, match="channels_last"):
        colorizer.compile([1])
