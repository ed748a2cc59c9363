"""The mutation-testing report: mutmut's verdicts per module, every survivor with its diff and, when it
cannot be killed, the reason it is equivalent (``tests/mutation/equivalent.toml``).

    mutmut run && python tests/mutation/report.py [--out benchmarks/results/mutation.md]

(``make mutation`` does both.) The score of a module is killed / (mutants - equivalent); a timeout
counts as killed (the mutant hung the tests). Exit status 1 when a module scores under 90%.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).with_name("equivalent.toml")
BAR = 0.90
# mutmut's exit codes (mutmut.stats.status_by_exit_code)
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout"}
STATUS.update({24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"})


def modules() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def verdicts(module: str) -> dict[str, str]:
    meta = REPO / "mutants" / f"{module}.meta"
    if not meta.is_file():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {name: STATUS.get(code, "suspicious") for name, code in codes.items()}


def diff(name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name], cwd=REPO, capture_output=True, text=True
    ).stdout
    return "\n".join(ln for ln in out.splitlines() if ln.startswith(("-", "+")) and not ln.startswith(("---", "+++")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "mutation.md")
    args = parser.parse_args(argv)
    equivalent: dict[str, str] = tomllib.loads(EQUIVALENT.read_text()) if EQUIVALENT.is_file() else {}
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    table, details, failing = [], [], []
    for module in modules():
        found = verdicts(module)
        counts = Counter(found.values())
        unchecked = counts["not checked"]
        survivors = sorted(n for n, v in found.items() if v not in ("killed", "timeout", "not checked"))
        excused = [n for n in survivors if n in equivalent]
        killed = counts["killed"] + counts["timeout"]
        scored = len(found) - unchecked - len(excused)
        score = killed / scored if scored else 0.0
        if not found or unchecked or score < BAR:
            failing.append(module)
        table.append(
            f"| `{module}` | {len(found)} | {killed} | {len(excused)} | {len(survivors) - len(excused)} | "
            f"{unchecked} | {100 * score:.1f}% |"
        )
        for name in survivors:
            reason = equivalent.get(name)
            verdict = found[name]
            heading = f"- `{name}` ({verdict}): " + (f"equivalent: {reason}" if reason else "**not killed**")
            details.append(
                heading + "\n\n  ```diff\n" + "\n".join(f"  {d}" for d in diff(name).splitlines()) + "\n  ```"
            )
    text = "\n".join(
        [
            "# Mutation testing of the core modules",
            "",
            f"`make mutation` (mutmut, `[tool.mutmut]` in pyproject.toml, then `tests/mutation/report.py`) on commit "
            f"{head.stdout.strip()}. Each mutant runs against the selected tests that execute the mutated function. "
            "Score = killed (timeouts included) / (mutants checked - equivalent); the bar is 90% per module. "
            "A module with mutants not checked (an interrupted run) does not pass.",
            "",
            "| module | mutants | killed | equivalent | surviving | not checked | score |",
            "|---|---|---|---|---|---|---|",
            *table,
            "",
            "## Survivors",
            "",
            *(details or ["None."]),
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print("\n".join(table))
    print(f"wrote {args.out}" + (f"; under {BAR:.0%}: {', '.join(failing)}" if failing else ""))
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
