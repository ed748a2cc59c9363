"""The obvious compiled forward, the ceiling our own compiled path is measured against.

What a user would write without our pipeline: ``torch.compile`` of the generator's ``predict``
with inductor's weight freezing switched on globally, under inference mode and the precision's
autocast, fed a channels_last batch. It shares nothing with :mod:`model.compiled`, so a slowdown
there shows up as a gap between the two rows (``benchmarks/model_forward.py``, ``benchmarks/load``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from model.device import Precision, autocast
from model.generator import AnyGenerator


def plain_compiled_predict(
    generator: AnyGenerator, *, device: torch.device, precision: Precision
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A call B x C x R x R -> B x 3 x R x R (the network's dtype); its first call per shape compiles.

    Every call runs with ``torch._inductor.config.freezing`` on, as if a user had set it for the
    process (PyTorch's CPU inference advice), without leaking the setting into other rows of the
    same benchmark process.
    """
    import torch._inductor.config as inductor_config

    net = generator.eval().to(device)
    compiled = torch.compile(lambda t: net.predict(t), dynamic=False)

    def call(batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(device).contiguous(memory_format=torch.channels_last)
        with inductor_config.patch(freezing=True), torch.inference_mode(), autocast(device, precision):
            return compiled(x)

    return call


__all__ = ["plain_compiled_predict"]
