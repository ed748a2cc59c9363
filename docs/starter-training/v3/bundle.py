"""Write a serving checkpoint as the bundled starter: weights stored in float16 (half the file), metadata kept.

    python docs/starter-training/v3/bundle.py CANDIDATE.pt model/weights/scgan-starter.pt --note "..."

Weights are cast back to float32 on load; the model card's figures are measured on the written file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from model.checkpoint import read_generator, resave_checkpoint


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    p.add_argument("--note", default="", help="recorded in the metadata as 'bundled_as'")
    args = p.parse_args()
    net, info = read_generator(args.source)
    note = args.note or f"float16 copy of {args.source.name} (sha256 {info.sha256[:16]})"
    resave_checkpoint(args.target, net, info, extra={"bundled_as": note}, dtype=torch.float16)
    print(f"wrote {args.target} ({args.target.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
