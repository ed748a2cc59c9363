"""Pick the starter among evaluated candidates, by a rule fixed before the comparison, and print the table.

Usage: python configs/starter-v3/pick_starter.py EVAL_DIR [--baseline NAME] [--bars], where EVAL_DIR holds one
scgan-eval report folder per candidate (``<name>/summary.json``; ``<name>-hintsN/`` for hinted runs) and
``<name>.pt`` checkpoints.

The rule (issue 20): among the candidates that take hints (the default serves hints too), with a positive
mean dPSNR over gray and a hue recall on green, blue and warm each no worse than the plain-L1 baseline's
(``A-l1``, today's loss on the new generator) less 0.02, the highest dPSNR at matched colourfulness.
Prints ``chosen: NAME`` last; none qualifying: the hint-taking candidate with the highest matched dPSNR.
``--baseline NAME`` compares hue recall with another candidate (cpu-hue-finetune.sh: the bundled starter);
``--bars`` also lets a hue recall at or above the issue's bar count as no worse.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import torch

HUES = ("green", "blue", "warm")
SLACK = 0.02
BARS = {"green": 0.45, "blue": 0.70, "warm": 0.65}  # issue 20's hue recall bars


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _load(folder: Path) -> dict[str, float]:
    s = json.loads((folder / "summary.json").read_text())
    recall = s.get("hue_recall", {}).get("recall", {})
    return {
        "dpsnr": s["psnr"]["mean_delta_vs_gray"],
        # None when the output is too gray for any allowed gain to reach the target colourfulness
        "matched": _number(s["matched_colorfulness"]["mean_psnr_delta_vs_gray"]),
        "colour_ratio": s["colorfulness"]["ratio_model_to_original"],
        "below3": s["below_gray"]["share"],
        "worst": s["psnr"]["worst_delta_vs_gray"],
        **{
            f"hue_{h}": (recall.get(h) if recall.get(h) is not None else math.nan)
            for h in ("warm", "green", "blue", "purple")
        },
    }


def _no_worse(row: dict[str, float], base: dict[str, float] | None, bars: bool) -> bool:
    """Hue recall on green, blue and warm each no worse than the baseline's less SLACK (or, with bars, at the bar)."""
    if base is None:
        return True
    return all(row[f"hue_{h}"] >= base[f"hue_{h}"] - SLACK or (bars and row[f"hue_{h}"] >= BARS[h]) for h in HUES)


def main(root: Path, baseline: str = "A-l1", bars: bool = False) -> int:
    reports = [p for p in sorted(root.iterdir()) if (p / "summary.json").is_file()]
    hinted_run = re.compile(r".*-hints\d+$")
    rows = {p.name: _load(p) for p in reports if not hinted_run.match(p.name)}
    hinted = {p.name: _load(p) for p in reports if hinted_run.match(p.name)}
    takes_hints = {
        name: bool(torch.load(root / f"{name}.pt", weights_only=False)["config"].get("hints")) for name in rows
    }
    print(
        "| candidate | hints | dPSNR | dPSNR matched 60% | colourfulness ratio | >3 dB below gray | worst | hue warm | green | blue | purple |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {'yes' if takes_hints[name] else 'no'} | {r['dpsnr']:+.2f} | {r['matched']:+.2f} | {r['colour_ratio']:.2f} | "
            f"{r['below3']:.0%} | {r['worst']:+.1f} | {r['hue_warm']:.2f} | {r['hue_green']:.2f} | {r['hue_blue']:.2f} | {r['hue_purple']:.2f} |"
        )
    if hinted:
        print("\n| candidate, hints per photo | dPSNR | colourfulness ratio |\n|---|---|---|")
        for name, r in hinted.items():
            print(f"| {name} | {r['dpsnr']:+.2f} | {r['colour_ratio']:.2f} |")
    base = rows.get(baseline)
    eligible = [n for n in rows if takes_hints[n]]
    qualified = [n for n in eligible if rows[n]["dpsnr"] > 0 and _no_worse(rows[n], base, bars)]
    pool = qualified or eligible
    if not pool:
        print("\nno hint-taking candidate was evaluated")
        return 1
    chosen = max(pool, key=lambda n: -math.inf if math.isnan(rows[n]["matched"]) else rows[n]["matched"])
    print(f"\nqualified by the rule: {qualified or 'none (fell back to the highest matched dPSNR)'}")
    print(f"chosen: {chosen}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir", type=Path)
    parser.add_argument("--baseline", default="A-l1", help="the candidate whose hue recall the others must keep")
    parser.add_argument("--bars", action="store_true", help="a hue recall at the issue's bar also counts as kept")
    args = parser.parse_args()
    sys.exit(main(args.eval_dir, args.baseline, args.bars))
