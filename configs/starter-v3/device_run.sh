#!/usr/bin/env bash
# Train the v3 starter and its ablations on one GPU in one sitting, evaluate every candidate on the
# validation split, pick the starter by pick_starter.py's rule, and leave the results in $OUT.
# Run from the repository root with the photos, ImageNet weights and wheels the device call carries in
# .gpu/ (see MODEL_CARD.md, "How the starter was trained"). Phase 1 trains five variants side by side,
# phase 2 continues the hint model two ways (trunk fine-tuned; a projected critic, NoGAN-style).
set -u
P1=${P1_MINUTES:-3.8}
P2=${P2_MINUTES:-1.3}
# shellcheck source=configs/starter-v3/device_lib.sh
. "$(dirname "$0")/device_lib.sh"
# Phase 0: the saliency cache once, so the parallel runs do not all compute it.
saliency_cache
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
validation_photos
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
