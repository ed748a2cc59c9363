#!/usr/bin/env bash
# Fill .gpu/ with what the v3 device scripts (device_run.sh, device_flat.sh) read on the device machine, small
# enough to travel with the working tree (64 MiB in all, the bundled starter included):
#   .gpu/photos/    the training photos as training loads them (long side 512, model.images.load_rgb), JPEG
#                   quality 90, same names (so the same validation split);
#   .gpu/lite2.pth, .gpu/lite0.pth   the ImageNet state dicts of the installed wheels, fp16, no classifier;
#   .gpu/whl/       the wheels the device's Python (3.12, torch preinstalled) lacks: pydantic and its needs, at
#                   this environment's versions.
# Run here, from the repository root, after make install. A CPU smoke run of device_flat.sh on a few photos
# (checks the plumbing in a few minutes; its figures mean nothing):
#   rm -rf /tmp/smoke /tmp/runs /tmp/eval /tmp/val /tmp/saliency /tmp/out && mkdir -p /tmp/smoke &&
#   cp $(ls .gpu/photos/*.jpg | head -40) /tmp/smoke/ &&
#   DEVICE=cpu NO_WHEELS=1 PY=.venv/bin/python PHOTOS=/tmp/smoke WORKERS=0 P1_MINUTES=0.3 P2_MINUTES=0.2 \
#   P3_MINUTES=0.2 EXTRA="--set optim.batch_size=2 --set data.crop_size=64 --set run.validate_every=10 \
#   --set run.precision=fp32" bash configs/starter-v3/device_flat.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
SRC=${SRC:-../shared/data/photos/train}
mkdir -p .gpu/photos .gpu/whl
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >> .git/info/exclude
"$PY" - "$SRC" <<'PY'
import sys
from pathlib import Path

import torch

from model.efficientnet_lite import default_weights_path
from model.images import load_rgb
from training.data import list_images

src = Path(sys.argv[1])
for path in list_images(src):
    load_rgb(path, 512).save(Path(".gpu/photos") / path.name, quality=90)
for variant in ("lite2", "lite0"):
    state = torch.load(default_weights_path(variant), map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}  # the v3 recipe uses no classifier
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, f".gpu/{variant}.pth")
print(len(list(Path(".gpu/photos").iterdir())), "photos")
PY
rm -f .gpu/whl/*.whl
pins=$("$PY" -m pip freeze | grep -iE '^(pydantic|pydantic[-_]core|pydantic[-_]settings|annotated[-_]types|typing[-_]inspection|python[-_]dotenv)==')
# shellcheck disable=SC2086  # one argument per pin
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .gpu/whl $pins
du -sh .gpu/photos .gpu/whl .gpu/*.pth
# What a device call carries: the tracked and untracked-but-not-ignored files, and .gpu, 64 MiB in all.
tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 cat 2>/dev/null | wc -c)
gpu=$(find .gpu -type f -print0 | xargs -0 cat | wc -c)
echo "working tree $((tree / 1048576)) MiB + .gpu $((gpu / 1048576)) MiB of the 64 MiB a call carries"
[ $((tree + gpu)) -le $((64 * 1048576)) ] || { echo "too big to carry: shrink .gpu/photos (quality) first" >&2; exit 1; }
