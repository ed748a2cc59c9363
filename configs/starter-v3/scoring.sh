# Sourced by the starter-v3 scripts that score checkpoints on this CPU (needs BIN; score needs EVAL):
# PRECISION, scgan-eval's auto precision here (bf16 where native, else fp32), so that reports of two
# precisions are kept apart and never put to one rule together; link_val_photos DIR, the photos every run of
# configs/starter-v3/base.toml holds out for validation; score NAME CHECKPOINT, scgan-eval on them into
# EVAL/NAME (skipped when that report exists); score_starter, the bundled file as EVAL/starter; score_mixes
# TUNED PREFIX, the starter and EVAL/TUNED.pt interpolated in weight space (configs/starter-v3/interpolate.py)
# at alpha 0.25, 0.5 and 0.75, scored as PREFIX-ALPHA.
PRECISION=$("$BIN/python" -c "import torch; from model.device import resolve_precision as r; print(r('auto', torch.device('cpu')))")
link_val_photos() {
    "$BIN/python" - "$1" <<'PY'
import sys
from pathlib import Path

from training.config import load_config
from training.data import split_paths

data = load_config("configs/starter-v3/base.toml", []).data  # the split every run of that config holds out
dst = Path(sys.argv[1])
dst.mkdir(parents=True, exist_ok=True)
for p in split_paths(data.train_dir, data.val_fraction)[1]:
    link = dst / p.name
    if not link.exists():
        link.symlink_to(p.resolve())
PY
}
score() {  # name, serving checkpoint
    [[ -f $EVAL/$1/summary.json ]] || "$BIN/scgan-eval" "$EVAL/val-photos" --checkpoint "$2" --max-side 512 \
        --device cpu --precision "$PRECISION" --out "$EVAL/$1" --sample 12 > "$EVAL/$1.log" 2>&1
}
score_starter() {
    cp model/weights/scgan-starter.pt "$EVAL/starter.pt"
    score starter "$EVAL/starter.pt"
}
score_mixes() {  # tuned checkpoint's name in EVAL, prefix of the mixes' names
    local alpha name
    for alpha in 0.25 0.5 0.75; do
        name=$2-$alpha
        [[ -f $EVAL/$name.pt ]] || "$BIN/python" configs/starter-v3/interpolate.py "$EVAL/starter.pt" \
            "$EVAL/$1.pt" "$alpha" "$EVAL/$name.pt"
        score "$name" "$EVAL/$name.pt"
    done
}
