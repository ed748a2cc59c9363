#!/usr/bin/env bash
# Issue 20, item 4: validation quality per minute of this 2-core CPU, the v2 starter's recipe against the
# CPU recipe the throughput table points to (benchmarks/results/training_throughput.md: 128 px crops with a
# frozen trunk make about 5x the crops per second of the v2 recipe). Both start from ImageNet weights only,
# use both cores (run.threads=0) and one data worker, batch 8, and stop after MINUTES of wall time
# (validation included); they run one after the other so neither slows the other.
#   bash configs/cpu-budget/run.sh            # then: python configs/cpu-budget/table.py
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-30}
BIN=${BIN:-.venv/bin}
common=(--set run.max_minutes="$MINUTES" --set run.max_steps=1000000 --set run.threads=0
        --set data.num_workers=1 --set optim.batch_size=8 --set run.sample_images=0 --set run.keep_validated=false)
"$BIN/scgan-train" configs/starter-stage1.toml "${common[@]}" --set run.out_dir=runs/cpu-budget/v2 \
    --set run.validate_every=200 --set run.checkpoint_every=200
"$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" --set run.out_dir=runs/cpu-budget/v3-128-frozen \
    --set data.crop_size=128 --set run.validate_every=1000 --set run.checkpoint_every=1000
