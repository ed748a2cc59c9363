"""The table of configs/cpu-budget/run.sh: each run's validations against its minutes of training.

Reads ``runs/cpu-budget/<run>/metrics.jsonl``, copies each run's ``config.json`` and ``metrics.jsonl`` to
``docs/starter-training/cpu-budget/<run>/`` and writes ``docs/starter-training/cpu-budget/table.md``: first
each recipe's figures after 30, 60, 90 and 120 minutes, then every validation. A leg that is not on this
machine (trained in an earlier checkout) is read from its committed copy in the docs folder.

    python configs/cpu-budget/table.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RUNS = REPO / "runs" / "cpu-budget"
DOCS = REPO / "docs" / "starter-training" / "cpu-budget"
LABELS = {  # in the tables' order: a leg that continues another right after it
    "v2": "v2 starter recipe: SCGAN + Lite0 global, 256 px, bf16",
    "v3-128-frozen": "v3 recipe on a CPU: Lite2 encoder frozen, 128 px, bf16",
    "v3-128-then-256": "then 256 px, trunk fine-tuned (lr 1e-4, trunk x0.1), bf16",
    "v3-128-frozen-fast": "v3 recipe on a CPU, Lite2 frozen, 128 px, bf16, channels_last and the bins table search",
    "v3-128-frozen-fast-c32": "the same, decoder 32 channels wide (not 64)",
    "v3-fast-128": "v3 recipe on a CPU, Lite2 frozen, 128 px, channels_last: the same leg again, a day later",
    "v3-fast-then-256": "then 256 px, trunk fine-tuned (lr 1e-4, trunk x0.1), channels_last",
    "v3-128-hue-balance": "the 128 px leg with data.hue_balance = 0.5 (trained beside CI: compare by steps, not minutes)",
    "v3-128-hue-balance-1": "the 128 px leg with data.hue_balance = 1.0 (its first minutes beside tests)",
    "v3-128-hue-balance-1-flat": "the same, the bins loss unweighted (loss.rebalance_uniform_mix = 1.0)",
    "v3-flat-128": "that flat-balanced 128 px leg again, in fp32 on a CPU without native bf16",
    "v3-flat-then-256": "then 256 px with the same balancing, trunk fine-tuned (lr 1e-4, trunk x0.1)",
}
# A leg that starts from another's checkpoint: its minutes and crops continue the parent's.
PARENTS = {
    "v3-128-then-256": "v3-128-frozen",
    "v3-fast-then-256": "v3-fast-128",
    "v3-flat-then-256": "v3-flat-128",
}
MARKS = (30, 60, 90, 120)
NEAR_MINUTES = 5.0  # the validation nearest a mark stands for it if it is at most this far off
HEADER = [
    "| recipe | minutes | steps | crops | crops/s | dPSNR | dPSNR matched 60% | colourfulness | >3 dB below gray "
    "| hue recall warm / green / blue |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
]


def source(name: str) -> Path:
    """The folder of leg ``name``'s records: its run folder, else its committed copy."""
    run = RUNS / name
    return run if (run / "metrics.jsonl").exists() else DOCS / name


def read(run: Path) -> tuple[list[dict[str, Any]], int]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return records, json.loads((run / "config.json").read_text())["optim"]["batch_size"]


def done_before(run: Path, when: float) -> tuple[float, int]:
    """Seconds and crops of training ``run`` had finished (calls that ended) before time ``when``."""
    records, batch = read(run)
    ended = [r for r in records if r["kind"] == "summary" and r["time"] <= when]
    return sum(r["seconds"] for r in ended), (ended[-1]["step"] * batch if ended else 0)


def validations(run: Path) -> list[dict[str, Any]]:
    """The leg's validations, each with the minutes and crops of training done by then over all its calls.

    Each call of run.sh resumes the leg and ends with a summary record (its seconds of wall time); the
    validations before a summary belong to that call. A call still running (no summary yet) is left out.
    """
    records, batch = read(run)
    done_seconds, done_crops = 0.0, 0
    if run.name in PARENTS and records:
        done_seconds, done_crops = done_before(source(PARENTS[run.name]), records[0]["time"])
    out: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for r in records:
        if r["kind"] == "validation":
            pending.append(r)
        elif r["kind"] == "summary":
            started = r["time"] - r["seconds"]
            for v in pending:
                seconds = done_seconds + v["time"] - started
                out.append(
                    {
                        **v,
                        "leg": run.name,
                        "minutes": seconds / 60,
                        "crops": done_crops + v["step"] * batch,
                        "seconds": seconds,
                    }
                )
            pending, done_seconds = [], done_seconds + r["seconds"]
    return out


def row(v: dict[str, Any]) -> str:
    return (
        f"| {v['minutes']:.0f} | {v['step']} | {v['crops']:,} | {v['crops'] / v['seconds']:.2f} | "
        f"{v['psnr_delta']:+.2f} | {v['psnr_delta_matched']:+.2f} | {v['colorfulness_ratio']:.0%} | "
        f"{v['share_3db_below_gray']:.0%} | "
        f"{v['hue_recall_warm']:.2f} / {v['hue_recall_green']:.2f} / {v['hue_recall_blue']:.2f} |"
    )


def at_marks(legs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Per recipe (a leg, or a leg and the one that continues it), its validation nearest each mark."""
    lines = list(HEADER)
    for name, vals in legs.items():
        if name in PARENTS:
            continue
        chain = vals + [v for child, parent in PARENTS.items() if parent == name for v in legs.get(child, [])]
        for mark in MARKS:
            nearest = min(chain, key=lambda v: abs(v["minutes"] - mark), default=None)
            if nearest is not None and abs(nearest["minutes"] - mark) <= NEAR_MINUTES:
                lines.append(f"| {LABELS.get(nearest['leg'], nearest['leg'])} {row(nearest)}")
    return lines


def main() -> None:
    names = {p.parent.name for folder in (RUNS, DOCS) for p in folder.glob("*/metrics.jsonl")}
    order = list(LABELS)
    ranked = sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))
    legs = {name: validations(source(name)) for name in ranked}
    lines = [
        "# Validation quality per CPU-minute (`bash configs/cpu-budget/run.sh`, then this table)",
        "",
        "Legs from ImageNet weights only, one after the other on the 2-core machine, batch 8. Minutes: wall time "
        "the leg has trained over all its calls of run.sh (each call resumes it), validation on the 35-photo "
        "split (long side 512) included; crops/s counts that time too. The 256 px leg starts from the 128 px "
        "leg's checkpoint: its minutes and crops include that leg's, its steps are its own. Legs without "
        "channels_last in their name trained in NCHW memory, as every run did before `run.channels_last`.",
        "",
        f"## After {', '.join(map(str, MARKS))} minutes (the validation nearest each mark, at most "
        f"{NEAR_MINUTES:.0f} minutes off; a mark a recipe has not reached is left out)",
        "",
        *at_marks(legs),
        "",
        "## Every validation",
        "",
        *HEADER,
    ]
    for name, vals in legs.items():
        lines += [f"| {LABELS.get(name, name)} {row(v)}" for v in vals]
        if source(name).parent == RUNS:
            target = DOCS / name
            target.mkdir(parents=True, exist_ok=True)
            for file in ("config.json", "metrics.jsonl"):
                shutil.copy(RUNS / name / file, target / file)
    DOCS.mkdir(parents=True, exist_ok=True)
    (DOCS / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
