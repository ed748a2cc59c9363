#!/usr/bin/env bash
# The "H" run: what the GPU's remaining minutes did after device_run.sh (same machine, its /tmp/runs kept).
# Continues F (trunk fine-tuned) for 2.2 more minutes with most crops hinted (hints_none_share 0.3),
# exports it and scores it like the others. Run from the repository root right after device_run.sh.
set -u
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=4
OUT=${OUT:-/tmp/out}
python3 -m training.cli configs/starter-v3/base.toml --set run.device=cuda --set data.train_dir=.gpu/photos \
  --set loss.encoder_weights=.gpu/lite2.pth --set loss.lite0_weights=.gpu/lite0.pth \
  --set data.saliency_cache=/tmp/saliency --set run.out_dir=/tmp/runs/H-more-hints --set run.max_minutes=2.2 \
  --set run.init_from=/tmp/runs/F-hints-finetune/ckpt/last.pt --set optim.lr_global_scale=0.1 \
  --set optim.lr_g=1e-4 --set data.hints_none_share=0.3 --set data.num_workers=6 \
  --set run.validate_every=100000 > /tmp/runs/H.log 2>&1
python3 -m training.cli export /tmp/runs/H-more-hints/ckpt/best.pt /tmp/eval/H.pt || exit 1
python3 -m training.cli_eval /tmp/val --checkpoint /tmp/eval/H.pt --device cuda --max-side 512 \
  --out /tmp/eval/H-more-hints --sample 12 > /tmp/eval/H.log 2>&1 &
for n in 1 10 100; do
  python3 -m training.cli_eval /tmp/val --checkpoint /tmp/eval/H.pt --device cuda --max-side 512 \
    --out "/tmp/eval/H-more-hints-hints$n" --hints "$n" --sample 4 > "/tmp/eval/H$n.log" 2>&1 &
done
wait
cd /tmp && split -b 15M eval/H.pt "$OUT/H.pt.part-"
tar -czf "$OUT/h.tgz" --exclude='*.pt' --exclude=saliency-cache eval/H-more-hints* runs/H-more-hints runs/H.log
