#!/usr/bin/env bash
# Issue 20: can the bundled starter take the greens of the flat-balanced CPU leg (v3-flat-128 at step 2000:
# green recall 0.23 against the starter's 0.02, docs/starter-training/cpu-budget/) by averaging the two in
# weight space? Both start from the same ImageNet trunk and the same seed-0 decoder of
# configs/starter-v3/base.toml, but were trained apart (the starter on a GPU, batch 32, most crops hinted;
# the leg on this CPU, batch 8, 128 px crops, drawn by hue). Interpolates them at alpha 0.25, 0.5 and 0.75
# (configs/starter-v3/interpolate.py), scores each with scgan-eval, and puts them to cpu-hue-finetune.sh's
# rule (pick_starter.py --baseline starter --bars). Results: docs/starter-training/v3/cross-soup/.
#   bash configs/starter-v3/cross-soup.sh    # needs runs/cpu-budget/v3-flat-128 (configs/cpu-budget/run.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
LEG=${LEG:-runs/cpu-budget/v3-flat-128/ckpt/step-00002000.pt}
source configs/starter-v3/scoring.sh  # PRECISION, link_val_photos, score, score_starter, score_mixes
EVAL=runs/starter-v3-cross-soup-$PRECISION
link_val_photos "$EVAL/val-photos"
score_starter
[[ -f $EVAL/flat128.pt ]] || "$BIN/scgan-train" export "$LEG" "$EVAL/flat128.pt" --half
score flat128 "$EVAL/flat128.pt"
score_mixes flat128 flat128-soup
"$BIN/python" configs/starter-v3/pick_starter.py "$EVAL" --baseline starter --bars
