"""``scgan-colorize INPUT... -o OUTDIR``: colorize files and folders in batches, here or on a server (``--server``)."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from cli.common import add_precision_argument, open_colorizer
from model.hints import Hint, HintError, parse_hints
from model.images import is_image_file
from model.options import CHROMA_GAIN_MAX, CHROMA_GAIN_MIN, check_chroma_gain
from model.storage import atomic_write
from model.wording import count

if TYPE_CHECKING:
    from model.pipeline import Colorizer

log = logging.getLogger("scgan.colorize")

_FORMATS = {"png": ("PNG", ".png"), "jpeg": ("JPEG", ".jpg"), "webp": ("WEBP", ".webp")}


def iter_inputs(paths: Sequence[Path]) -> Iterator[tuple[Path, Path]]:
    """(file, name relative to its input) pairs: files as given, folders searched recursively, sorted."""
    for path in paths:
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p)):
                yield found, found.relative_to(path)
        else:
            yield path, Path(path.name)


def output_names(relatives: Sequence[Path], suffix: str) -> list[Path]:
    """Output paths mirroring the inputs' relative paths; clashes (a.png and a.jpg) get the source suffix added."""
    plain = [rel.with_suffix(suffix) for rel in relatives]
    counts: dict[Path, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    names: list[Path] = []
    seen: set[Path] = set()
    for rel, name in zip(relatives, plain):
        if counts[name] > 1:
            name = rel.with_name(f"{rel.stem}.{rel.suffix.lstrip('.') or 'img'}{suffix}")
        stem, n = name, 1
        while name in seen:
            n += 1
            name = stem.with_name(f"{stem.stem}-{n}{suffix}")
        seen.add(name)
        names.append(name)
    return names


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scgan-colorize", description=__doc__)
    p.add_argument("inputs", nargs="+", type=Path, help="image files or folders (searched recursively)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint (default: the bundled starter)")
    p.add_argument("--render-size", type=int, default=None, help="working resolution, a multiple of 256")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    add_precision_argument(p)
    p.add_argument("--format", default="png", choices=tuple(_FORMATS))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--saliency", action="store_true", help="also write each image's saliency map")
    p.add_argument(
        "--chroma-gain",
        type=float,
        default=1.0,
        help=f"vividness: the predicted chroma times this, {CHROMA_GAIN_MIN:g} (gray) to {CHROMA_GAIN_MAX:g}; default 1",
    )
    p.add_argument(
        "--hints",
        type=Path,
        metavar="JSON",
        help="colour hints for every input, for a checkpoint that takes them: a file holding what POST /colorize "
        'takes in its hints field, [{"x": X, "y": Y, "color": "#rrggbb"}, ...], X and Y pixels of the photo as '
        "displayed (EXIF orientation applied), origin top left",
    )
    p.add_argument(
        "--skip-existing", action="store_true", help="leave out (and never upload) files whose output already exists"
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="debug messages, and with --server one line per HTTP request"
    )
    remote = p.add_argument_group("remote", "run the model on a running scgan-serve instead of here")
    remote.add_argument("--server", metavar="URL", help="the service's base URL, e.g. http://scgan.internal:8000")
    remote.add_argument(
        "--api-key-file", type=Path, metavar="F", help="file holding the API key (first non-comment line)"
    )
    remote.add_argument("--concurrency", type=int, default=4, metavar="N", help="uploads in flight (default 4)")
    remote.add_argument(
        "--retries",
        type=int,
        default=5,
        metavar="N",
        help="per file, retries after a 503 (Retry-After), a 504 or a connection error (default 5)",
    )
    remote.add_argument("--timeout", type=float, default=120.0, metavar="S", help="per request (default 120 s)")
    return p


def _save(image: Image.Image, dest: Path, fmt: str) -> None:
    """Write ``image`` to ``dest`` atomically, with the mode the umask gives a new file: a run that is killed or a
    server that dies mid-run never leaves a truncated file that ``--skip-existing`` would then keep."""
    pil_format, _ = _FORMATS[fmt]
    if pil_format == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")
    with atomic_write(dest) as tmp:
        image.save(tmp, pil_format)


def _saliency_name(dest: Path) -> Path:
    return dest.with_name(f"{dest.stem}.saliency.png")


def _save_result(out_dir: Path, dest: Path, fmt: str, colour: Image.Image, saliency: Image.Image | None) -> None:
    _save(colour, out_dir / dest, fmt)
    if saliency is not None:
        _save(saliency, out_dir / _saliency_name(dest), "png")


def _progress(total: int) -> tqdm:
    """The progress bar of both paths: one step per input file."""
    return tqdm(total=total, desc="colorizing", unit="image", disable=None)


def _read_hints(parser: argparse.ArgumentParser, path: Path | None) -> list[Hint]:
    """The hints of ``--hints`` (none without it); a file that cannot be read or used ends the run (exit 2)."""
    if path is None:
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"--hints: cannot read {path}: {getattr(exc, 'strerror', None) or exc}")
    try:
        return parse_hints(text, limit=sys.maxsize)  # here no limit; a server applies its own (checked before)
    except HintError as exc:
        parser.error(f"--hints {path}: {exc}")


def _check_remote_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.server is None:
        if args.api_key_file is not None:
            parser.error("--api-key-file needs --server")
        return
    if args.checkpoint is not None:
        parser.error("--checkpoint cannot be used with --server: the server's checkpoint is used")
    if args.concurrency < 1 or args.retries < 0 or args.timeout <= 0:
        parser.error("--concurrency must be at least 1, --retries at least 0, --timeout positive")


def _colorize_remote(args: argparse.Namespace, jobs: list[tuple[Path, Path]]) -> tuple[int, bool]:
    """Run ``jobs`` on ``--server``: (files that failed, whether the run was aborted)."""
    from cli.remote import RemoteColorizer, RetryPolicy, check_server_url, read_api_key, run_remote

    try:
        check_server_url(args.server)
        api_key = read_api_key(args.api_key_file) if args.api_key_file else None
    except ValueError as exc:
        log.error("%s", exc)
        return 0, True
    stop = threading.Event()
    client = RemoteColorizer(
        args.server,
        api_key=api_key,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        policy=RetryPolicy(retries=args.retries),
        render_size=args.render_size,
        chroma_gain=args.chroma_gain,
        hints=args.hint_list,
        stop=stop,
    )
    try:
        try:
            info = client.model_info()
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, or a failing server: one line, exit 2
            log.error("cannot use %s: %s", args.server, exc)
            return 0, True
        if args.saliency and not info.get("has_saliency", False):
            log.error("the server's checkpoint has no saliency branch; drop --saliency")
            return 0, True
        if args.hint_list and not info.get("takes_hints", False):
            log.error("the server's checkpoint takes no colour hints; drop --hints")
            return 0, True
        limit = info.get("limits", {}).get("max_hints")
        if isinstance(limit, int) and len(args.hint_list) > limit:
            log.error("%d hints is more than the server's limit of %d", len(args.hint_list), limit)
            return 0, True
        log.info(
            "colorizing %s on %s (checkpoint %s, %d in flight)",
            count(len(jobs), "image"),
            args.server,
            info.get("checkpoint", {}).get("name", "?"),
            args.concurrency,
        )
        with _progress(len(jobs)) as bar:
            try:
                run = run_remote(
                    client,
                    jobs,
                    concurrency=args.concurrency,
                    saliency=args.saliency,
                    save=lambda dest, colour, sal: _save_result(args.output, dest, args.format, colour, sal),
                    progress=bar,
                    stop=stop,
                )
            except KeyboardInterrupt:
                stop.set()
                raise
    finally:
        client.close()
    if client.retried:
        log.info("retried %s", count(client.retried, "request"))
    if run.aborted:
        log.error("stopped: %s", run.aborted)
    return len(run.failed), run.aborted is not None


def _configure_logging(verbose: bool) -> None:
    """INFO lines of ours; httpx's per-request INFO lines and our retries' DEBUG lines only with ``--verbose``."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("httpx").setLevel(logging.INFO if verbose else logging.WARNING)


def _jobs(args: argparse.Namespace) -> tuple[list[tuple[Path, Path]], int]:
    """(source, destination relative to the output folder) pairs to run, and how many inputs there are in all."""
    inputs = list(iter_inputs(args.inputs))
    destinations = output_names([rel for _, rel in inputs], _FORMATS[args.format][1])
    jobs = [(path, dest) for (path, _), dest in zip(inputs, destinations)]
    if args.skip_existing:

        def done(dest: Path) -> bool:
            return (args.output / dest).is_file() and (
                not args.saliency or (args.output / _saliency_name(dest)).is_file()
            )

        kept = [(path, dest) for path, dest in jobs if not done(dest)]
        if len(kept) < len(jobs):
            log.info("skipping %d of %s whose output exists", len(jobs) - len(kept), count(len(jobs), "image"))
        jobs = kept
    return jobs, len(inputs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        check_chroma_gain(args.chroma_gain)
    except ValueError as exc:
        parser.error(str(exc))
    _check_remote_args(parser, args)
    args.hint_list = _read_hints(parser, args.hints)
    _configure_logging(args.verbose)
    jobs, total = _jobs(args)
    if args.server is not None:
        failed, aborted = _colorize_remote(args, jobs)
        if aborted:
            return 2
        log.info("colorized %d of %s into %s", len(jobs) - failed, count(len(jobs), "image"), args.output)
        return 1 if failed or not total else 0
    colorizer = open_colorizer(args, log)
    if colorizer is None:
        return 2
    if args.saliency and not colorizer.has_saliency:
        log.error("the checkpoint has no saliency branch; drop --saliency")
        return 2
    if args.hint_list and not colorizer.takes_hints:
        log.error("the checkpoint takes no colour hints; drop --hints")
        return 2

    failed = 0
    with _progress(len(jobs)) as bar:
        for start in range(0, len(jobs), args.batch_size):
            failed += _colorize_batch(colorizer, args, jobs[start : start + args.batch_size])
            bar.update(len(jobs[start : start + args.batch_size]))
    log.info("colorized %d of %s into %s", len(jobs) - failed, count(len(jobs), "image"), args.output)
    return 1 if failed or not total else 0


def _colorize_batch(colorizer: Colorizer, args: argparse.Namespace, jobs: Sequence[tuple[Path, Path]]) -> int:
    """Colorize and save one batch in-process; the number of files that failed."""
    failed = 0
    batch: list[tuple[Path, Path, Image.Image]] = []
    results: list[tuple[Image.Image | None, Image.Image | None]]
    for path, dest in jobs:
        try:
            with Image.open(path) as opened:
                opened.load()
                batch.append((path, dest, opened.copy()))
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
            log.warning("skipping %s: %s", path, exc)
            failed += 1
    if not batch:
        return failed
    images = [img for _, _, img in batch]
    try:
        results = [
            *colorizer.colorize_with_saliency(
                images, saliency=args.saliency, chroma_gain=args.chroma_gain, hints=[args.hint_list] * len(images)
            )
        ]
    except (OSError, ValueError, RuntimeError) as exc:
        log.warning("a batch of %s failed (%s); retrying them one by one", count(len(batch), "image"), exc)
        results = []
        for path, _, img in batch:
            try:
                results.append(
                    colorizer.colorize_with_saliency(
                        [img], saliency=args.saliency, chroma_gain=args.chroma_gain, hints=[args.hint_list]
                    )[0]
                )
            except (OSError, ValueError, RuntimeError) as one_exc:
                log.warning("skipping %s: %s", path, one_exc)
                failed += 1
                results.append((None, None))
    for (_, dest, _), (out, sal) in zip(batch, results):
        if out is not None:
            _save_result(args.output, dest, args.format, out, sal)
    return failed


if __name__ == "__main__":
    sys.exit(main())
