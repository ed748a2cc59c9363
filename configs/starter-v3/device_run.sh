#!/usr/bin/env bash
# Train the v3 starter and its ablations on one GPU in one sitting, evaluate every candidate on the
# validation split, pick the starter by pick_starter.py's rule, and leave the results in $OUT.
# Run from the repository root with the photos, ImageNet weights and wheels the device call carries in
# .gpu/ (see MODEL_CARD.md, "How the starter was trained"). Phase 1 trains five variants side by side,
# phase 2 continues the hint model two ways (trunk fine-tuned; a projected critic, NoGAN-style).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
P1=${P1_MINUTES:-3.8}
P2=${P2_MINUTES:-1.3}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/runs /tmp/eval
PY=${PY:-python3}
if [ -d .gpu/whl ] && [ -z "${NO_WHEELS:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
nvidia-smi -L 2>/dev/null | head -1
"$PY" -c "import torch, pydantic; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
DEVICE=${DEVICE:-cuda}
PHOTOS=${PHOTOS:-.gpu/photos}
# shellcheck disable=SC2206  # EXTRA: more --set overrides, word-split on purpose (a CPU smoke run shrinks batches)
common=(--set run.device=$DEVICE --set data.train_dir=$PHOTOS --set loss.encoder_weights=.gpu/lite2.pth
        --set loss.lite0_weights=.gpu/lite0.pth --set data.saliency_cache=/tmp/saliency ${EXTRA:-})
train() {  # name, minutes, overrides...
  local name=$1 minutes=$2; shift 2
  "$PY" -m training.cli configs/starter-v3/base.toml "${common[@]}" --set run.out_dir=/tmp/runs/$name \
    --set run.max_minutes=$minutes "$@" > /tmp/runs/$name.log 2>&1
  echo "$name: exit $? $(grep -c '"validation"' /tmp/runs/$name/metrics.jsonl 2>/dev/null) validations"
}
export PHOTOS
# Phase 0: the saliency cache once, so the parallel runs do not all compute it.
"$PY" - <<'PY'
from pathlib import Path
from training.data import SaliencySource, _load_rgb, list_images
import os
src = SaliencySource(Path(os.environ.get("PHOTOS", ".gpu/photos")), "", Path("/tmp/saliency"))
for p in list_images(os.environ.get("PHOTOS", ".gpu/photos")):
    rgb = _load_rgb(p, 512)
    if rgb is not None:
        src.get(p, rgb)
PY
# Phase 1: the losses on the new generator (A-C without hints), the hint model (D), film augmentation (E).
train A-l1 "$P1" --set model.chroma_head=direct --set model.hints=false --set loss.bins=0 --set loss.l1=1.0 \
  --set loss.chroma=1.0 --set loss.colorfulness=0 --set loss.perceptual=0 --set loss.target_chroma_gain=1.0 &
train B-bins "$P1" --set model.hints=false --set loss.colorfulness=0 --set loss.perceptual=0 \
  --set loss.target_chroma_gain=1.0 &
train C-bins-vivid "$P1" --set model.hints=false &
train D-hints "$P1" &
train E-hints-film "$P1" --set data.film_share=0.3 &
wait
# Phase 2: from D, the trunk fine-tuned at a tenth of the learning rate; and a projected critic on top.
train F-hints-finetune "$P2" --set run.init_from=/tmp/runs/D-hints/ckpt/last.pt --set optim.lr_global_scale=0.1 \
  --set optim.lr_g=1e-4 &
train G-hints-critic "$P2" --set run.stage=stage2 --set run.init_from=/tmp/runs/D-hints/ckpt/last.pt \
  --set loss.gan=projected --set loss.adversarial=0.05 --set optim.lr_g=1e-4 --set optim.lr_d=1e-4 \
  --set optim.n_critic=1 --set model.discriminator_channels=32 &
wait
# Evaluation: each run's best state, exported, on the held-out validation photos (long side 512).
"$PY" - <<'PY'
import shutil
from pathlib import Path
from training.data import split_paths
import os
_, val = split_paths(os.environ.get("PHOTOS", ".gpu/photos"), 0.1)
dst = Path("/tmp/val"); dst.mkdir(exist_ok=True)
for p in val:
    shutil.copy(p, dst / p.name)
print(len(val), "validation photos")
PY
evaluate() {  # run folder: export its best state, score it automatic and (if it takes hints) with 1/10/100 hints
  local run=$1 name
  name=$(basename "$run")
  "$PY" -m training.cli export "$run/ckpt/best.pt" "/tmp/eval/$name.pt" > /dev/null 2>&1 || return
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
for run in /tmp/runs/*/; do
  [ -f "$run/ckpt/best.pt" ] && evaluate "$run" &
done
wait
"$PY" configs/starter-v3/pick_starter.py /tmp/eval | tee /tmp/eval/selection.md
chosen=$(sed -n 's/^chosen: //p' /tmp/eval/selection.md)
cp "/tmp/eval/$chosen.pt" /tmp/chosen.pt 2>/dev/null && (cd /tmp && split -b 15M chosen.pt "$OUT/chosen.pt.part-")
cp /tmp/eval/D-hints.pt /tmp/d.pt 2>/dev/null && [ "$chosen" != "D-hints" ] && (cd /tmp && split -b 15M d.pt "$OUT/D-hints.pt.part-")
tar -C /tmp -czf "$OUT/results.tar.gz" --exclude='*.pt' --exclude=saliency-cache runs eval
ls -la "$OUT"
