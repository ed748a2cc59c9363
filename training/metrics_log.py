"""The run folder's metrics log: every record in JSONL, the training scalars in CSV, TensorBoard when installed."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only JSONL (everything) and CSV (training scalars) in the run folder; TensorBoard if installed."""

    def __init__(self, out_dir: Path) -> None:
        self.jsonl = out_dir / "metrics.jsonl"
        self.csv = out_dir / "metrics.csv"
        self._fields: list[str] | None = None
        if self.csv.exists():
            with self.csv.open() as fh:
                self._fields = next(csv.reader(fh), None)
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional

            self.tb: Any = SummaryWriter(str(out_dir / "tensorboard"))
        except Exception:  # noqa: BLE001 -- tensorboard missing or unusable: the CSV log still has everything
            self.tb = None

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        row = {"kind": kind, "step": step, "time": round(time.time(), 3), **values}
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if kind == "train":
            if self._fields is None:
                self._fields = list(row)
                with self.csv.open("w", newline="") as fh:
                    csv.writer(fh).writerow(self._fields)
            with self.csv.open("a", newline="") as fh:
                csv.DictWriter(fh, self._fields, extrasaction="ignore").writerow(row)
        if self.tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{kind}/{key}", value, step)


__all__ = ["MetricsLog"]
