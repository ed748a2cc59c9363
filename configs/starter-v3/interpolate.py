"""Interpolate two serving checkpoints of one network in weight space (WiSE-FT, Wortsman et al., CVPR 2022).

    python configs/starter-v3/interpolate.py BASE.pt TUNED.pt ALPHA OUT.pt

OUT = (1 - ALPHA) * BASE + ALPHA * TUNED, tensor by tensor (the folded weights and the BatchNorm statistics
alike; integer buffers are TUNED's), written in float16 as the bundled starter is. It keeps TUNED's task,
size and training data, records both sources, and carries neither side's validation figures, step or state,
which describe other weights.
A fine-tune that buys colour with dPSNR may keep some of the colour for less of the cost part of the way
back to where it started.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model.checkpoint import CheckpointError, read_generator, resave_checkpoint


def interpolate(base: Path, tuned: Path, alpha: float, out: Path) -> Path:
    """Write the interpolation of ``base`` and ``tuned`` at ``alpha`` (0: base, 1: tuned) to ``out``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    net_base, info_base = read_generator(base)
    net_tuned, info_tuned = read_generator(tuned)
    if info_base.config != info_tuned.config or info_base.has_saliency != info_tuned.has_saliency:
        raise CheckpointError(f"{base} and {tuned} are different networks: they cannot be interpolated")
    state_base = net_base.state_dict()
    mixed = {
        k: torch.lerp(state_base[k], v, alpha) if v.is_floating_point() else v
        for k, v in net_tuned.state_dict().items()
    }
    net_tuned.load_state_dict(mixed, strict=True)
    record = {
        "base": base.name,
        "base_sha256": info_base.sha256,
        "tuned": tuned.name,
        "tuned_sha256": info_tuned.sha256,
        "alpha": alpha,
    }
    return resave_checkpoint(
        out,
        net_tuned,
        info_tuned,
        extra={"interpolated": record},
        metrics={},
        drop=("step", "source_state", "weights", "bundled_as", "interpolated"),
        dtype=torch.float16,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", type=Path)
    p.add_argument("tuned", type=Path)
    p.add_argument("alpha", type=float, help="0 gives BASE, 1 gives TUNED")
    p.add_argument("out", type=Path)
    args = p.parse_args()
    try:
        print(f"wrote {interpolate(args.base, args.tuned, args.alpha, args.out)}")
    except (CheckpointError, ValueError) as exc:
        raise SystemExit(f"interpolate.py: {exc}") from None


if __name__ == "__main__":
    main()
