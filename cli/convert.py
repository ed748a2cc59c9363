"""``scgan-convert OFFICIAL.pth OUT``: rewrite an authors' released generator in our format."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("scgan.convert")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scgan-convert", description=__doc__)
    parser.add_argument("source", type=Path, help="state dict saved by the reference implementation")
    parser.add_argument("output", type=Path, help="where to write the scgan-colorize checkpoint")
    args = parser.parse_args(argv)
    from model.checkpoint import CheckpointError, convert_official  # torch: after --help

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        out = convert_official(args.source, args.output)
    except CheckpointError as exc:
        log.error("%s", exc)
        return 2
    log.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
