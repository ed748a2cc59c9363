"""What the command-line tools share: ``--precision``, and opening the checkpoint asked for (or the bundled one)."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from model.options import PRECISION_SETTINGS
from model.weights import default_checkpoint_path

if TYPE_CHECKING:
    from model.pipeline import Colorizer


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision`` with the service's choices and default (``auto``)."""
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISION_SETTINGS,
        help="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32 (as the service)",
    )


def open_colorizer(args: argparse.Namespace, log: logging.Logger) -> Colorizer | None:
    """A ``Colorizer`` from ``--checkpoint`` (default: the bundled one), or None after logging why not.

    ``args`` carries ``checkpoint``, ``device``, ``precision``, ``render_size`` and ``batch_size``.
    """
    checkpoint = args.checkpoint or default_checkpoint_path()
    if checkpoint is None:
        log.error("no --checkpoint given and no bundled starter checkpoint is installed; pass --checkpoint CKPT")
        return None
    from model.checkpoint import CheckpointError  # torch: only a local run pays for it
    from model.pipeline import Colorizer

    try:
        return Colorizer.from_checkpoint(
            checkpoint,
            device=args.device,
            precision=args.precision,
            render_size=args.render_size,
            batch_size=args.batch_size,
        )
    except (CheckpointError, ValueError) as exc:
        log.error("%s", exc)
        return None


__all__ = ["add_precision_argument", "open_colorizer"]
