#!/usr/bin/env bash
# Issue 20, item 4: validation quality per minute of this 2-core CPU, the v2 starter's recipe against the
# CPU recipe the throughput table points to (benchmarks/results/training_throughput.md: 128 px crops with a
# frozen trunk make about 5x the crops per second of the v2 recipe). Both start from ImageNet weights only,
# use both cores (run.threads=0) and one data worker, batch 8, and train MINUTES more of wall time per call
# (validation included): every call resumes each leg from runs/cpu-budget/<leg>/ckpt/last.pt, so calling it
# again adds another MINUTES. Legs run one after the other so neither slows the other.
#   bash configs/cpu-budget/run.sh                      # 30 minutes each; again: 60 minutes each
#   MINUTES=60 LEGS=v3-128-then-256 bash configs/cpu-budget/run.sh   # after the 128 px leg's 60 minutes
#   LEGS=v3-128-frozen-fast bash configs/cpu-budget/run.sh   # the 128 px leg on today's faster code
#   LEGS=v3-128-frozen-fast-c32 bash configs/cpu-budget/run.sh   # the same, decoder 32 channels wide
#   LEGS=v3-fast-128 bash configs/cpu-budget/run.sh && MINUTES=90 LEGS=v3-fast-then-256 bash configs/cpu-budget/run.sh
#                                                       # the 128-then-256 chain to 120 minutes on today's code
#   MINUTES=60 LEGS=v3-128-hue-balance bash configs/cpu-budget/run.sh   # 2000 steps with data.hue_balance=0.5
#   MINUTES=60 LEGS=v3-128-hue-balance-1 bash configs/cpu-budget/run.sh # the same with data.hue_balance=1.0
#   MINUTES=60 LEGS=v3-128-hue-balance-1-flat bash configs/cpu-budget/run.sh # and with the bins loss unweighted
#   MINUTES=60 LEGS=v3-flat-128 bash configs/cpu-budget/run.sh && MINUTES=30 LEGS=v3-flat-then-256 bash configs/cpu-budget/run.sh
#                                                       # the flat-balanced 128 px leg again, carried on to 256 px
#   MINUTES=36 LEGS=v3-flat-then-256 bash configs/cpu-budget/run.sh # then resumed, to 90 minutes of that chain
#   python configs/cpu-budget/table.py                  # the table, cumulative minutes per leg
# The first three legs trained in NCHW memory, before run.channels_last (now on by default) existed: they
# keep it off, so that they reproduce.
set -euo pipefail
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-30}
LEGS=${LEGS:-v2 v3-128-frozen}
BIN=${BIN:-.venv/bin}
nchw=(--set run.channels_last=false)
common=(--resume --set run.max_minutes="$MINUTES" --set run.max_steps=1000000 --set run.threads=0
        --set data.num_workers=1 --set optim.batch_size=8 --set run.sample_images=0 --set run.keep_validated=false)
for leg in $LEGS; do
    case $leg in
    v2)
        "$BIN/scgan-train" configs/starter-stage1.toml "${common[@]}" "${nchw[@]}" --set run.out_dir=runs/cpu-budget/v2 \
            --set run.validate_every=200 --set run.checkpoint_every=200 ;;
    v3-128-frozen)
        "$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" "${nchw[@]}" --set run.out_dir=runs/cpu-budget/v3-128-frozen \
            --set data.crop_size=128 --set run.validate_every=1000 --set run.checkpoint_every=1000 ;;
    v3-128-frozen-fast | v3-fast-128)  # the second: the same recipe again, as the first leg of the chain below
        "$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" --set run.out_dir="runs/cpu-budget/$leg" \
            --set data.crop_size=128 --set run.validate_every=1000 --set run.checkpoint_every=1000 ;;
    v3-128-frozen-fast-c32)  # half the decoder's width: does less capacity generalise better (hue_probe.md)?
        "$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" --set run.out_dir=runs/cpu-budget/v3-128-frozen-fast-c32 \
            --set data.crop_size=128 --set model.decoder_channels=32 --set run.validate_every=1000 \
            --set run.checkpoint_every=1000 ;;
    v3-128-then-256)  # the low-resolution-then-full schedule: from the 128 px leg's last.pt, 256 px crops,
                      # trunk fine-tuned at a tenth of the decoder's (lower) learning rate
        "$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" "${nchw[@]}" --set run.out_dir=runs/cpu-budget/v3-128-then-256 \
            --set run.init_from=runs/cpu-budget/v3-128-frozen/ckpt/last.pt --set optim.lr_g=1e-4 \
            --set optim.lr_global_scale=0.1 --set run.validate_every=300 --set run.checkpoint_every=300 ;;
    v3-128-hue-balance)  # data.hue_balance: photos drawn by their rare hues (green 8.8% -> 12.8% of the
                         # clearly coloured pixels); 2000 steps, compared with v3-128-frozen-fast step by step
        "$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" --set run.out_dir=runs/cpu-budget/v3-128-hue-balance \
            --set data.crop_size=128 --set data.hue_balance=0.5 --set run.max_steps=2000 --set run.validate_every=1000 \
            --set run.checkpoint_every=1000 ;;
    v3-128-hue-balance-1)  # the same with data.hue_balance=1.0 (green 16.1% of the clearly coloured pixels)
        "$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" --set run.out_dir=runs/cpu-budget/v3-128-hue-balance-1 \
            --set data.crop_size=128 --set data.hue_balance=1.0 --set run.max_steps=2000 --set run.validate_every=1000 \
            --set run.checkpoint_every=1000 ;;
    v3-128-hue-balance-1-flat | v3-flat-128)  # balance by sampling only: the bins loss unweighted (rebalance_uniform_mix
                                # 1.0), so that rare colours are not boosted twice; the second: the same leg again,
                                # as the first leg of the chain below
        "$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" --set run.out_dir="runs/cpu-budget/$leg" \
            --set data.crop_size=128 --set data.hue_balance=1.0 --set loss.rebalance_uniform_mix=1.0 --set run.max_steps=2000 \
            --set run.validate_every=1000 --set run.checkpoint_every=1000 ;;
    v3-flat-then-256)  # v3-fast-then-256 with the flat leg's balancing kept, from v3-flat-128's last.pt
        "$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" --set run.out_dir=runs/cpu-budget/v3-flat-then-256 \
            --set run.init_from=runs/cpu-budget/v3-flat-128/ckpt/last.pt --set data.hue_balance=1.0 \
            --set loss.rebalance_uniform_mix=1.0 --set optim.lr_g=1e-4 --set optim.lr_global_scale=0.1 \
            --set run.validate_every=300 --set run.checkpoint_every=300 ;;
    v3-fast-then-256)  # v3-128-then-256 on today's code, from v3-fast-128's last.pt
        "$BIN/scgan-train" configs/starter-v3/base.toml "${common[@]}" --set run.out_dir=runs/cpu-budget/v3-fast-then-256 \
            --set run.init_from=runs/cpu-budget/v3-fast-128/ckpt/last.pt --set optim.lr_g=1e-4 \
            --set optim.lr_global_scale=0.1 --set run.validate_every=300 --set run.checkpoint_every=300 ;;
    *) echo "unknown leg: $leg (v2, v3-128-frozen, v3-128-frozen-fast, v3-128-frozen-fast-c32, v3-128-then-256," \
            "v3-fast-128, v3-fast-then-256, v3-128-hue-balance, v3-128-hue-balance-1,"\
            "v3-128-hue-balance-1-flat, v3-flat-128, v3-flat-then-256)" >&2; exit 2 ;;
    esac
done
