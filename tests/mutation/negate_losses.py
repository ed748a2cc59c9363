"""Negate each loss and penalty in a copy of the project and check that the training tests catch it.

Every ``return`` of a loss or penalty function in ``training/losses.py`` and ``training/projected.py``
(functions named ``*loss*`` or ``*penalty*``, and ``forward`` of a ``*Loss`` class; the first element
when a tuple is returned) is replaced, one at a time, by its negation in a copy of the working tree;
``pytest tests/training -m "not slow"`` then runs in that copy and must fail. The test files are
passed explicitly, the loss tests first, so a caught mutant stops early (``-x``); the set of tests is
the same as the folder's.

    python tests/mutation/negate_losses.py [--out benchmarks/results/negate_losses.md]

Exit status 0 when every mutant is caught (and the unmutated copy passes), 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODULES = ("training/losses.py", "training/projected.py")
# The likeliest to catch a mutant first.
FIRST = ("test_losses.py", "test_perceptual.py", "test_projected.py", "test_training.py")


@dataclass(frozen=True)
class Mutant:
    module: str
    function: str
    line: int
    original: str
    mutated_source: str


def _is_loss(function: str, cls: str | None) -> bool:
    name = function.lower()
    return "loss" in name or "penalty" in name or (function == "forward" and (cls or "").endswith("Loss"))


def find_mutants(module: str, source: str) -> list[Mutant]:
    """One mutant per ``return`` of a loss or penalty function: its value (or the tuple's first value) negated."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def position(lineno: int, col: int) -> int:
        return offsets[lineno - 1] + len(lines[lineno - 1].encode()[:col].decode())

    mutants = []

    def visit(node: ast.AST, cls: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, child.name)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _is_loss(child.name, cls):
                    for ret in (n for n in ast.walk(child) if isinstance(n, ast.Return) and n.value is not None):
                        value = ret.value.elts[0] if isinstance(ret.value, ast.Tuple) else ret.value
                        assert value.end_lineno is not None and value.end_col_offset is not None
                        start = position(value.lineno, value.col_offset)
                        end = position(value.end_lineno, value.end_col_offset)
                        mutated = source[:start] + "-(" + source[start:end] + ")" + source[end:]
                        qualified = f"{cls}.{child.name}" if cls else child.name
                        mutants.append(Mutant(module, qualified, ret.lineno, source[start:end], mutated))
                visit(child, cls)

    visit(tree, None)
    return mutants


def copy_tree(dest: Path) -> None:
    """The working tree's tracked and untracked (not ignored) files."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / name.decode()
        if src.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def run_tests(copy: Path) -> tuple[bool, str, float]:
    """``pytest tests/training -m "not slow"`` in ``copy`` (files in FIRST order, stop at the first failure)."""
    folder = copy / "tests" / "training"
    files = sorted(
        folder.glob("test_*.py"),
        key=lambda p: (p.name not in FIRST, FIRST.index(p.name) if p.name in FIRST else 0, p.name),
    )
    env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", *map(str, files), "-m", "not slow", "-x", "-q", "-p", "no:cacheprovider"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    failed = re.findall(r"^FAILED (\S+)", proc.stdout, re.MULTILINE)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-200:]
    return proc.returncode == 0, failed[0] if failed else summary, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "negate_losses.md")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the unmutated copy first")
    args = parser.parse_args(argv)
    rows, survivors = [], 0
    with tempfile.TemporaryDirectory(prefix="negate-losses-") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        if not args.skip_baseline:
            passed, detail, seconds = run_tests(copy)
            print(f"baseline: {'passed' if passed else 'FAILED'} in {seconds:.0f} s ({detail})", flush=True)
            if not passed:
                return 1
        for module in MODULES:
            original = (copy / module).read_text()
            for mutant in find_mutants(module, original):
                (copy / module).write_text(mutant.mutated_source)
                passed, detail, seconds = run_tests(copy)
                (copy / module).write_text(original)
                survivors += passed
                verdict = "SURVIVED" if passed else "caught"
                print(f"{module}:{mutant.line} {mutant.function}: {verdict} in {seconds:.0f} s ({detail})", flush=True)
                rows.append(
                    f"| `{module}:{mutant.line}` | `{mutant.function}` | `-({mutant.original})` | {verdict} | "
                    f"{'' if passed else f'`{detail}`'} | {seconds:.0f} |"
                )
    text = "\n".join(
        [
            "# Negated losses against the training tests",
            "",
            f"Produced by `python tests/mutation/negate_losses.py` on commit {head.stdout.strip()} (plus any "
            "uncommitted changes): each return of a loss or penalty function in `training/losses.py` and "
            '`training/projected.py` negated in a copy of the project, then `pytest tests/training -m "not slow" -x`.',
            "",
            f"**{len(rows) - survivors} of {len(rows)} mutants caught.**",
            "",
            "| where | function | mutation | result | first failing test | seconds |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"{len(rows) - survivors} of {len(rows)} caught; wrote {args.out}")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
