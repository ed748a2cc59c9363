"""``scgan-train CONFIG [--set key=value ...] [--resume]`` and ``scgan-train export STATE OUT``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from training.config import ConfigError, load_config


def _setup_logging() -> None:
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _export_main(argv: Sequence[str]) -> int:
    from training.export import export_checkpoint
    from training.state import StateError

    p = argparse.ArgumentParser(prog="scgan-train export", description="Write the serving checkpoint of a run.")
    p.add_argument("state", help="a training state file, or a run's ckpt/ folder (best.pt, else last.pt)")
    p.add_argument("output", help="checkpoint file to write")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    p.add_argument("--raw", action="store_true", help="export the raw weights even when EMA weights exist")
    args = p.parse_args(argv)
    try:
        export_checkpoint(args.state, args.output, half=args.half, use_ema=not args.raw)
    except (StateError, ValueError) as exc:
        logging.getLogger("scgan.train").error("%s", exc)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    if argv and argv[0] == "export":
        return _export_main(argv[1:])
    p = argparse.ArgumentParser(prog="scgan-train", description="Train SCGAN (pretrain-global, stage1, stage2).")
    p.add_argument("config", help="TOML (or YAML) config; defaults are the published recipe of run.stage")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set optim.lr_g=1e-4",
    )
    p.add_argument("--resume", action="store_true", help="continue from <run.out_dir>/ckpt/last.pt if it exists")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        logging.getLogger("scgan.train").error("%s", exc)
        return 2
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from training.data import DataError
    from training.loop import train
    from training.state import StateError
    from training.validation import make_validator

    try:
        train(cfg, resume=args.resume, make_validator=make_validator)
    except (StateError, DataError) as exc:  # a run that cannot start (or resume): one line, no traceback
        logging.getLogger("scgan.train").error("%s", exc)
        return 2
    except FloatingPointError as exc:  # diverged: ckpt/last.pt is the last state before the bad step
        logging.getLogger("scgan.train").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
