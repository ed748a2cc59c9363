"""``make fuzz``: the property tests with fresh random examples, round after round, for a given time.

``make test`` runs every property test (``@given``; pytest's ``hypothesis`` marker) on the same derandomized
examples each time, so CI's verdict does not depend on luck. This runner hunts for new failures instead: each
round runs them under ``HYPOTHESIS_PROFILE=explore`` (tests/conftest.py) with a new random seed, until
``--seconds`` (``FUZZ_SECONDS``) have passed, and stops at the first failing round, printing its seed and the
command that replays it (Hypothesis also prints the failing example and its ``@reproduce_failure`` blob).

    make fuzz FUZZ_SECONDS=600
    python tests/fuzz.py --seconds 60 -- -k decoding     # extra arguments go to pytest
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = "hypothesis and not slow"


def property_test_files(extra: Sequence[str]) -> list[str]:
    """The files holding the selected property tests (collected once; rounds then skip the other files)."""
    listing = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", MARKER, *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    files = sorted({line.split("::")[0] for line in listing.stdout.splitlines() if "::" in line})
    if not files:
        raise SystemExit(f"fuzz: no property tests selected:\n{listing.stdout}{listing.stderr}")
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("FUZZ_SECONDS", "300")),
        help="how long to keep starting rounds (FUZZ_SECONDS, default 300); at least one round runs",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    files = property_test_files(args.pytest_args)
    env = {**os.environ, "HYPOTHESIS_PROFILE": "explore"}
    deadline = time.monotonic() + args.seconds
    rounds = 0
    while rounds == 0 or time.monotonic() < deadline:
        rounds += 1
        seed = random.SystemRandom().randrange(2**32)
        command = [sys.executable, "-m", "pytest", "-q", "-m", MARKER, f"--hypothesis-seed={seed}", *files]
        command += args.pytest_args
        print(f"fuzz: round {rounds}, seed {seed}", flush=True)
        if subprocess.run(command, cwd=REPO, env=env, check=False).returncode != 0:
            print(
                f"fuzz: round {rounds} FAILED with seed {seed}; replay it with:\n"
                f"  HYPOTHESIS_PROFILE=explore {shlex.join(command)}",
                flush=True,
            )
            return 1
    print(f"fuzz: {rounds} rounds of fresh examples, no failure", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
