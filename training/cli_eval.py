"""``scgan-eval IMAGES_DIR [--checkpoint CKPT] [--out REPORT_DIR]``: score a checkpoint on colour photos.

Gray versions of the photos under IMAGES_DIR (searched recursively) are colorized through
the service's pipeline and compared with the originals; the gray image is scored as the
baseline. Writes metrics.csv, summary.json, report.md and grid.png into REPORT_DIR.
Exit status: 0 done, 1 no photo could be evaluated, 2 bad arguments or checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from cli.colorize import iter_inputs
from cli.common import add_precision_argument, open_colorizer
from model.wording import count
from training.eval_report import write_report
from training.evaluate import evaluate

log = logging.getLogger("scgan.evaluate")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scgan-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("images", metavar="IMAGES_DIR", type=Path, help="folder of colour photos (searched recursively)")
    p.add_argument(
        "--checkpoint", metavar="CKPT", type=Path, default=None, help="checkpoint (default: the bundled starter)"
    )
    p.add_argument(
        "--out",
        metavar="REPORT_DIR",
        type=Path,
        default=Path("eval-report"),
        help="report folder (default: eval-report)",
    )
    p.add_argument("--render-size", type=int, default=None, help="working resolution, a multiple of 256")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    add_precision_argument(p)
    p.add_argument("--batch-size", type=_positive, default=8)
    p.add_argument(
        "--max-side",
        type=_positive,
        default=None,
        help="downscale photos so the long side is at most N pixels before evaluating",
    )
    p.add_argument("--limit", type=_non_negative, default=None, help="evaluate only the first N photos")
    p.add_argument("--sample", type=_non_negative, default=8, help="photos in the report's grid (default 8)")
    p.add_argument(
        "--hints",
        type=_non_negative,
        default=0,
        help="give a hint-taking checkpoint N seeded random colour hints per photo, each the mean colour of the "
        "original's 5 x 5 patch there (default 0: automatic)",
    )
    p.add_argument("--hint-seed", type=int, default=0, help="seed of the hints' positions (default 0)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if not args.images.is_dir():
        log.error("%s is not a folder", args.images)
        return 2
    colorizer = open_colorizer(args, log)
    if colorizer is None:
        return 2

    found = list(iter_inputs([args.images]))
    files = [path for path, _ in found]
    names = [relative.as_posix() for _, relative in found]
    if args.hints and not colorizer.takes_hints:
        log.error(
            "--hints: %s takes no colour hints",
            colorizer.checkpoint_info.path if colorizer.checkpoint_info else "the checkpoint",
        )
        return 2
    result = evaluate(
        colorizer,
        files,
        names=names,
        max_side=args.max_side,
        limit=args.limit,
        sample=args.sample,
        progress=True,
        hints=args.hints,
        hint_seed=args.hint_seed,
    )
    if not result.count:
        log.error("no photo under %s could be evaluated (%d skipped)", args.images, len(result.skipped))
        return 1
    paths = write_report(result, args.out)
    worst, worst_name = result.worst_psnr_delta
    log.info(
        "%s: PSNR %.2f dB (gray %.2f, delta %+.2f, worst %+.2f on %s, %.0f%% more than 3 dB below gray), "
        "SSIM %.4f, colourfulness ratio %.3f, delta at matched colourfulness %+.2f dB (k %.3f), hue recall %s",
        count(result.count, "photo"),
        result.mean("psnr"),
        result.mean("psnr", "gray"),
        result.psnr_delta,
        worst,
        worst_name,
        100 * result.share_below_gray(3.0),
        result.mean("ssim"),
        result.colorfulness_ratio,
        result.psnr_delta_matched,
        result.matched.k if result.matched else float("nan"),
        ", ".join(f"{hue} {value:.2f}" for hue, value in result.hue_recall.items()),
    )
    log.info("report written to %s", paths["report"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
