# What the v3 device scripts share (sourced by device_run.sh and device_flat.sh, from the repository root):
# the wheels the device call carries, the overrides every run takes, training one run in the background,
# the saliency cache, the validation photos and the scoring of a run's best state. Settings, from the
# environment: PY, DEVICE (cuda), PHOTOS (.gpu/photos), OUT (/tmp/out), EXTRA (more --set overrides, word-split
# on purpose: a CPU smoke run shrinks batches), NO_WHEELS (use the environment's own packages).
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
OUT=${OUT:-/tmp/out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
PHOTOS=${PHOTOS:-.gpu/photos}
export PHOTOS
mkdir -p "$OUT" /tmp/runs /tmp/eval
if [ -d .gpu/whl ] && [ -z "${NO_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi -L 2>/dev/null | head -1
"$PY" -c "import torch, pydantic; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# shellcheck disable=SC2206  # EXTRA is word-split on purpose
common=(--set run.device="$DEVICE" --set data.train_dir="$PHOTOS" --set loss.encoder_weights=.gpu/lite2.pth
        --set loss.lite0_weights=.gpu/lite0.pth --set data.saliency_cache=/tmp/saliency ${EXTRA:-})

train() {  # name, minutes, overrides...: base.toml with the common overrides; log in /tmp/runs/NAME.log
  local name=$1 minutes=$2; shift 2
  "$PY" -m training.cli configs/starter-v3/base.toml "${common[@]}" --set run.out_dir="/tmp/runs/$name" \
    --set run.max_minutes="$minutes" "$@" > "/tmp/runs/$name.log" 2>&1
  echo "$name: exit $? $(grep -c '"validation"' "/tmp/runs/$name/metrics.jsonl" 2>/dev/null) validations"
}

saliency_cache() {  # every photo's saliency once, so that parallel runs do not all compute it
  "$PY" - <<'PY'
from pathlib import Path
from training.data import SaliencySource, _load_rgb, list_images
import os
src = SaliencySource(Path(os.environ["PHOTOS"]), "", Path("/tmp/saliency"))
for p in list_images(os.environ["PHOTOS"]):
    rgb = _load_rgb(p, 512)
    if rgb is not None:
        src.get(p, rgb)
PY
}

validation_photos() {  # the held-out split, as training draws it, copied to /tmp/val
  "$PY" - <<'PY'
import shutil
from pathlib import Path
from training.data import split_paths
import os
_, val = split_paths(os.environ["PHOTOS"], 0.1)
dst = Path("/tmp/val"); dst.mkdir(exist_ok=True)
for p in val:
    shutil.copy(p, dst / p.name)
print(len(val), "validation photos")
PY
}

score() {  # name, checkpoint: scgan-eval on /tmp/val into /tmp/eval/NAME; a hint-taking one with 1/10/100 hints too
  local name=$1 ckpt=$2
  [ "$ckpt" = "/tmp/eval/$name.pt" ] || cp "$ckpt" "/tmp/eval/$name.pt"
  "$PY" -m training.cli_eval /tmp/val --checkpoint "/tmp/eval/$name.pt" --device "$DEVICE" --max-side 512 \
    --out "/tmp/eval/$name" --sample 12 > "/tmp/eval/$name.log" 2>&1
  if "$PY" -c "import sys, torch; sys.exit(0 if torch.load('/tmp/eval/$name.pt', weights_only=False)['config']['hints'] else 1)"; then
    for n in 1 10 100; do
      "$PY" -m training.cli_eval /tmp/val --checkpoint "/tmp/eval/$name.pt" --device "$DEVICE" --max-side 512 \
        --out "/tmp/eval/$name-hints$n" --hints $n --sample 4 > "/tmp/eval/$name-hints$n.log" 2>&1 &
    done
    wait
  fi
  echo "$name evaluated"
}

evaluate() {  # run folder: export its best state and score it
  local run=$1 name
  name=$(basename "$run")
  "$PY" -m training.cli export "$run/ckpt/best.pt" "/tmp/eval/$name.pt" > /dev/null 2>&1 || return
  score "$name" "/tmp/eval/$name.pt"
}
