"""Colour hints through the HTTP API: issue 21's bar, measured against a running ``scgan-serve``.

Starts ``scgan-serve`` with its defaults (the bundled checkpoint; any ``SCGAN_*`` in the environment, such as
``SCGAN_COMPILE=off``, is passed on) on a free loopback port. For each photo of the validation split (long
side 512, as ``scgan-eval``): its gray version is uploaded to ``POST /colorize?format=png`` with 0 and with
``--hints`` seeded random hints (each the mean colour of the original's 5 x 5 patch, as ``scgan-eval --hints``),
and the answer is scored against the original. Also checked per answer: the upload's size, and its luma
(the answer's BT.601 Y against the gray upload, in levels).

    python benchmarks/hints_http.py [--hints 10] [--out benchmarks/results/hints_http.md]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.load.system import free_port  # noqa: E402
from model.hints import hints_to_json  # noqa: E402
from model.images import load_rgb  # noqa: E402
from training.data import split_paths  # noqa: E402
from training.evaluate import to_gray  # noqa: E402
from training.hint_sim import sample_hints  # noqa: E402
from training.metrics import psnr  # noqa: E402

PHOTOS = REPO.parent / "shared" / "data" / "photos" / "train"


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _start(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, SCGAN_PORT=str(port), PYTHONPATH=str(REPO))
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    began = time.monotonic()
    while time.monotonic() - began < 1200:
        if process.poll() is not None:
            raise SystemExit(f"scgan-serve exited during start-up; see {log}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"scgan-serve was not ready within 20 minutes; see {log}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=Path, default=PHOTOS)
    p.add_argument("--hints", type=int, default=10)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    _, val = split_paths(args.photos, 0.1)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / "scgan-hints-http.log"
    process, url = _start(log)
    rows = []
    try:
        model = httpx.get(f"{url}/v1/model", timeout=10).json()
        with httpx.Client(base_url=url, timeout=120) as client:
            for index, path in enumerate(val):
                original = load_rgb(path, 512)
                gray = to_gray(original)
                upload = _png(gray)
                row = {"name": path.name, "gray": psnr(original, gray.convert("RGB"))}
                for count in (0, args.hints):
                    data = {"hints": hints_to_json(sample_hints(original, count, seed=index))} if count else {}
                    response = client.post(
                        "/colorize?format=png", files={"file": (path.name, upload, "image/png")}, data=data
                    )
                    response.raise_for_status()
                    answer = Image.open(io.BytesIO(response.content)).convert("RGB")
                    luma = np.asarray(answer.convert("YCbCr"))[..., 0].astype(int)
                    row[count] = psnr(original, answer)
                    row[f"size_ok_{count}"] = answer.size == gray.size
                    row[f"luma_{count}"] = int(np.abs(luma - np.asarray(gray, dtype=int)).max())
                rows.append(row)
                print(
                    f"{path.name}: {row[0] - row['gray']:+.2f} dB, {row[args.hints] - row['gray']:+.2f} dB with hints",
                    flush=True,
                )
    finally:
        process.terminate()
        process.wait(60)
    auto = float(np.mean([r[0] - r["gray"] for r in rows]))
    hinted = float(np.mean([r[args.hints] - r["gray"] for r in rows]))
    sizes = all(r[f"size_ok_{c}"] for r in rows for c in (0, args.hints))
    luma = max(r[f"luma_{c}"] for r in rows for c in (0, args.hints))
    text = (
        f"# Colour hints through the HTTP API (`python benchmarks/hints_http.py --hints {args.hints}`)\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}; `scgan-serve` with its defaults "
        f"(checkpoint `{model['checkpoint']['name']}`, "
        f"precision {model.get('precision')}, compiled batch sizes {model.get('compiled_batch_sizes')}). "
        f"{len(rows)} validation photos, long side 512, gray PNG uploads, `format=png` answers.\n\n"
        "| hints per photo | mean dPSNR over gray | over the same checkpoint without hints |\n|---:|---:|---:|\n"
        f"| 0 | {auto:+.2f} dB | |\n| {args.hints} | {hinted:+.2f} dB | {hinted - auto:+.2f} dB |\n\n"
        f"Every answer has the upload's size: {'yes' if sizes else 'NO'}. Largest difference between an answer's "
        f"luma (BT.601 Y) and the gray upload: {luma} level(s).\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
