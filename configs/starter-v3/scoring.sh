# Sourced by the starter-v3 scripts that score checkpoints on this CPU (needs BIN; score needs EVAL):
# PRECISION, scgan-eval's auto precision here (bf16 where native, else fp32), so that reports of two
# precisions are kept apart and never put to one rule together; link_val_photos DIR, the photos every run of
# configs/starter-v3/base.toml holds out for validation; score NAME CHECKPOINT, scgan-eval on them into
# EVAL/NAME (skipped when that report exists).
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
