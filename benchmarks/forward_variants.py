"""The variants ``benchmarks/model_forward.py`` times: what each is, how its forward is built, how a call is timed.

Also the two figures the table is read against: the FLOPs of one image and the
device's peak matrix-multiply rate.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from model import Generator, GeneratorConfig, fold_spectral_norm
from model.layers import SpectralNorm, fuse_batch_norm

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
    fused: bool = False  # BatchNorm folded into the convolutions (model.layers.fuse_batch_norm)
    # eager | torchscript (freeze + optimize_for_inference) | inductor (torch.compile)
    # | colorizer (our production compiled path) | plain (benchmarks/plain_compile.py)
    engine: str = "eager"

    @property
    def compiled(self) -> bool:
        return self.engine in ("inductor", "colorizer", "plain")

    @property
    def peak_dtype(self) -> str:
        return "bf16" if self.autocast is torch.bfloat16 else "fp16" if self.autocast is torch.float16 else "fp32"


BASELINE = "fp32 eager"
SERVICE_CPU = "fp32 BN-fused, channels_last"
CPU_VARIANTS = (
    Variant(BASELINE),
    Variant("fp32 channels_last", channels_last=True),
    Variant(SERVICE_CPU, channels_last=True, fused=True),
    Variant("bf16 autocast, BN-fused, channels_last", channels_last=True, autocast=torch.bfloat16, fused=True),
    Variant("fp32 TorchScript freeze + oneDNN", channels_last=True, fused=True, engine="torchscript"),
    Variant("fp32 torch.compile (inductor, freezing)", channels_last=True, fused=True, engine="inductor"),
    Variant(
        "bf16 torch.compile (inductor, freezing)",
        channels_last=True,
        fused=True,
        engine="inductor",
        autocast=torch.bfloat16,
    ),
    Variant("fp32 unfolded SN, power iteration per call", unfolded=True),
)
CUDA_VARIANTS = (
    Variant(BASELINE),
    Variant("fp32 channels_last", channels_last=True),
    Variant("fp16 autocast, BN-fused, channels_last", channels_last=True, autocast=torch.float16, fused=True),
    Variant("bf16 autocast, BN-fused, channels_last", channels_last=True, autocast=torch.bfloat16, fused=True),
    Variant("fp16 torch.compile (inductor)", channels_last=True, fused=True, engine="inductor", autocast=torch.float16),
    Variant("fp32 unfolded SN, power iteration per call", unfolded=True),
)
OURS = "ours: Colorizer.compile + predict"
PLAIN = "plain compile (benchmarks/plain_compile.py)"


def compiled_pair(device: torch.device) -> tuple[Variant, Variant]:
    """Our production compiled path and the plain compile, both at the service's default precision here."""
    from model.device import resolve_precision

    precision = resolve_precision("auto", device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return (
        Variant(f"{precision} {OURS}", channels_last=True, fused=True, engine="colorizer", autocast=dtype),
        Variant(f"{precision} {PLAIN}", channels_last=True, engine="plain", autocast=dtype),
    )


def gflop_per_image(config: GeneratorConfig) -> float:
    """FLOPs of the inference path (folded, no saliency branch) for one 256 x 256 image, counted on meta."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = fold_spectral_norm(Generator(config, with_saliency=False).eval())
        x = torch.empty(1, config.in_channels, SIZE, SIZE)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.predict(x)
    return counter.get_total_flops() / 1e9


def peak_matmul_gflops(device: torch.device, dtype: torch.dtype, n: int, seconds: float) -> float:
    """The physical ceiling: GFLOP/s of a large square ``torch.mm`` (2 n^3 FLOPs) on this device and dtype."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    sync(device)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        torch.mm(a, b)
        calls += 1
    sync(device)
    return 2.0 * n**3 * calls / (time.perf_counter() - start) / 1e9


def build_networks(
    config: GeneratorConfig, device: torch.device, state: dict[str, torch.Tensor] | None = None
) -> tuple[Generator, Generator]:
    """(folded inference net, unfolded net with spectral-norm modules in training mode, BN in eval).

    ``state``: the folded weights of a real checkpoint, loaded into the folded network
    (the unfolded one then keeps random weights: it is only timed).
    """
    torch.manual_seed(0)
    unfolded = Generator(config, with_saliency=False, spectral_norm=True).eval()
    folded = fold_spectral_norm(copy.deepcopy(unfolded))
    if state is not None:
        folded.load_state_dict(state, strict=False)
    for module in unfolded.modules():
        if isinstance(module, SpectralNorm):
            module.train()  # one power iteration per call, stored, as the reference does in every mode
    return folded.to(device), unfolded.to(device)


class _Predict(torch.nn.Module):
    """``Generator.predict`` as ``forward``, for tracing."""

    def __init__(self, net: Generator) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.predict(x)


def make_call(
    v: Variant,
    folded: Generator,
    unfolded: Generator,
    example: torch.Tensor,
    device: torch.device,
    checkpoint: Generator | None = None,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The variant's forward: its own copy of the network, prepared as the variant says.

    ``checkpoint``: the loaded generator the compiled pair (``colorizer``, ``plain``) start from.
    """
    if v.engine in ("colorizer", "plain"):
        return _pair_call(v, checkpoint, example, device)
    if v.unfolded:
        net: torch.nn.Module = unfolded
    else:
        net = copy.deepcopy(folded)
        if v.fused:
            fuse_batch_norm(net)
        if v.channels_last:
            net = net.to(memory_format=torch.channels_last)
    forward: Callable[[torch.Tensor], torch.Tensor] = _Predict(net).eval()  # type: ignore[assignment]
    if v.engine == "torchscript":
        with torch.inference_mode(), _mode(v, device):
            traced = torch.jit.trace(forward, example, check_trace=False)  # type: ignore[arg-type]
            forward = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    elif v.engine == "inductor":
        forward = torch.compile(forward, dynamic=False)

    def call(x: torch.Tensor) -> torch.Tensor:
        if v.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _mode(v, device), _freezing(v):
            return forward(x)

    return call


def _pair_call(
    v: Variant, checkpoint: Generator | None, example: torch.Tensor, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Our compiled path (compiled here for the example's batch size) or the plain compile (on its first call)."""
    from benchmarks.plain_compile import plain_compiled_predict
    from model import Colorizer
    from model.device import resolve_precision

    if checkpoint is None:
        raise ValueError(f"{v.name} needs a checkpoint (width 'checkpoint')")
    precision = resolve_precision("auto", device)
    if v.engine == "plain":
        plain = plain_compiled_predict(copy.deepcopy(checkpoint), device=device, precision=precision)
        # What Colorizer.predict does after its forward, so both rows do the same work and compare outputs.
        return lambda x: plain(x).float().clamp(0.0, 1.0).cpu()
    colorizer = Colorizer(checkpoint, device=device, precision=precision, render_size=example.shape[-1])
    report = colorizer.compile([example.shape[0]])
    if report.failed:
        raise RuntimeError(f"{v.name}: compiling failed: {report.failed}")
    return lambda x: colorizer.predict(x)[0]


@contextlib.contextmanager
def _freezing(variant: Variant) -> Iterator[None]:
    """Inductor's weight freezing for this call only (constant-fold the weights, prepack them for oneDNN)."""
    if variant.engine != "inductor":
        yield
        return
    import torch._inductor.config as inductor_config

    with inductor_config.patch(freezing=True):
        yield


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so a timer sees it done."""
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


def timed(call: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    """Seconds one call takes, device work included, and its output."""
    start = time.perf_counter()
    out = call()
    sync(device)
    return time.perf_counter() - start, out
