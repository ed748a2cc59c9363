"""What the checkpoint studies on the photo splits share: their command line, the checkpoint, the splits, the report."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from model.pipeline import Colorizer
from model.weights import default_checkpoint_path
from training.data import split_paths

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "photos" / "train"


@dataclass(frozen=True)
class Study:
    checkpoint: Path
    colorizer: Colorizer
    train: list[Path]
    val: list[Path]
    out: Path | None


def open_study(description: str) -> Study:
    """Parse ``--checkpoint``/``--photos``/``--out``; load the checkpoint on the CPU; split the photos as training does."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the bundled starter")
    p.add_argument("--photos", type=Path, default=PHOTOS)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    checkpoint = args.checkpoint or default_checkpoint_path()
    if checkpoint is None:
        raise SystemExit("no --checkpoint given and no bundled starter in this install")
    train, val = split_paths(args.photos, 0.1)
    return Study(checkpoint, Colorizer.from_checkpoint(checkpoint, device="cpu"), train, val, args.out)


def emit(lines: list[str], out: Path | None) -> None:
    """Print a report and write it to ``out`` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.write_text(text)
