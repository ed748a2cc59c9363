"""``make gpu-check``: everything a CUDA machine should confirm, in one run of at most 8 minutes.

Meant for a machine lent for minutes, with PyTorch preinstalled (at whatever version) and no
internet: it installs this project with ``pip install --no-deps --no-build-isolation -e .``
(nothing is resolved or downloaded), checks that the packages the parts need import, records
the environment, then runs, each under its own time limit:

1. ``tests``: the CUDA-marked tests (``tests/gpu``: fp16 against fp32 on the committed photos,
   batched against single images, the service answering on CUDA over HTTP);
2. ``forward``: ``benchmarks/model_forward.py`` on CUDA (fp32, fp16, bf16, channels_last,
   published width and the starter checkpoint), then ``--rows compiled`` (our compiled path
   against the plain compile);
3. ``load``: ``python -m benchmarks.load --preset minute`` with ``SCGAN_DEVICE=cuda``.

Results go to ``benchmarks/results/gpu/`` (``--out-dir``): ``env.md``, one output file per part,
``summary.md`` (pass/fail per part). Without CUDA it exits at once with one line (status 2).
``GPU_CHECK_ALLOW_CPU=1`` runs tiny versions of every part on the CPU instead, to try the
orchestration without a GPU (use ``--out-dir`` outside the repository and ``--no-install`` then).

    make gpu-check                                   # PYTHON=... to pick the interpreter
    python benchmarks/gpu_check.py --photos DIR      # other real photos for the fp16 check
    GPU_CHECK_ALLOW_CPU=1 python benchmarks/gpu_check.py --no-install --out-dir /tmp/gpu-dry
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "gpu"
DEFAULT_PHOTOS = REPO / "service" / "web" / "static" / "examples"
TOTAL_S = 480.0  # the whole check, set-up included
CPU_SLACK = 4.0  # a CPU dry run's limits are this many times longer: a small CPU is slow at every part

#: module -> what needs it; a missing essential module stops the check before any part runs.
ESSENTIAL = {
    "torch": "everything",
    "numpy": "the model",
    "PIL": "image decoding",
    "fastapi": "the service",
    "starlette": "the service",
    "uvicorn": "the service",
    "multipart": "the service's uploads (python-multipart)",
    "pydantic": "the service",
    "pydantic_settings": "the service's settings",
    "prometheus_client": "the service's /metrics",
    "fastapi_offline": "the service's /docs",
    "tqdm": "the model package",
    "httpx": "the tests' and the load benchmark's clients",
    "pytest": "the CUDA tests",
}
OPTIONAL = {
    "torchvision": "the command-line tool and training (not the checks)",
    "triton": "torch.compile on CUDA (the compiled forward rows)",
    "uvloop": "a cheaper load-benchmark client",
    "matplotlib": "the load benchmark's plot",
}
PROJECT = ("model", "service.app", "benchmarks.load")

# The facts recorded in env.md, gathered in a child process (CUDA is initialised there, not here).
FACTS = """
import json, platform, sys, torch
facts = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
         "torch CUDA": torch.version.cuda, "cuDNN": torch.backends.cudnn.version(),
         "CUDA available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    facts.update({"GPU": p.name, "GPUs": torch.cuda.device_count(), "GPU memory (GiB)": round(p.total_memory / 2**30, 1),
                  "compute capability": f"{p.major}.{p.minor}", "bf16 supported": torch.cuda.is_bf16_supported()})
print(json.dumps(facts))
"""


@dataclass
class Part:
    """One part of the check: a command, its time limit, and where its output goes."""

    name: str
    command: list[str]
    limit_s: float
    output: str
    env: dict[str, str] | None = None
    log: str | None = None  # stderr's file, when stdout alone is the result (a markdown table)


@dataclass
class Outcome:
    name: str
    status: str  # pass | fail | timeout | skipped
    seconds: float
    output: str
    note: str = ""


def run_captured(
    command: Sequence[str], limit_s: float, out: Path, env: dict[str, str] | None = None, log: Path | None = None
) -> tuple[str, float]:
    """Run ``command`` from the repository's root, stdout to ``out`` (stderr too, or to ``log``); (status, seconds)."""
    began = time.monotonic()
    with out.open("wb") as sink, (log or Path(os.devnull)).open("wb") as errors:
        stderr = errors if log is not None else subprocess.STDOUT
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=stderr)
        try:
            code = process.wait(timeout=max(limit_s, 1.0))
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            return "timeout", time.monotonic() - began
    return ("pass" if code == 0 else "fail"), time.monotonic() - began


def missing_modules(python: str, modules: Sequence[str]) -> dict[str, str]:
    """The modules that do not import in ``python`` (from the repository's root), with the error's last line."""
    probe = (
        "import importlib, json, sys\n"
        "bad = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        bad[name] = f'{type(exc).__name__}: {exc}'.splitlines()[0]\n"
        "print(json.dumps(bad))\n"
    )
    done = subprocess.run([python, "-c", probe, *modules], cwd=REPO, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return dict.fromkeys(modules, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?")
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def environment(python: str) -> dict[str, object]:
    """Python, torch, CUDA, cuDNN and GPU facts, and the driver from nvidia-smi when there is one."""
    done = subprocess.run([python, "-c", FACTS], cwd=REPO, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()
        raise SystemExit(f"gpu-check: torch does not import: {tail[-1] if tail else done.returncode}")
    facts: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if smi.returncode == 0:
            facts["nvidia-smi"] = "; ".join(line.strip() for line in smi.stdout.splitlines() if line.strip())
    except (OSError, subprocess.TimeoutExpired):
        facts["nvidia-smi"] = "not available"
    return facts


def parts(python: str, args: argparse.Namespace, cpu: bool) -> list[Part]:
    """The three parts; tiny versions on the CPU (a dry run of the orchestration)."""
    out: Path = args.out_dir
    env = dict(os.environ, GPU_CHECK_PHOTOS=str(args.photos))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    device = "cpu" if cpu else "cuda"
    pytest_cmd = [python, "-m", "pytest", "-m", "cuda", "tests/gpu", "-v", "-rs", "-p", "no:cacheprovider"]
    pytest_cmd += ["--noconftest", f"--junitxml={out / 'tests.xml'}"]
    forward = [python, "benchmarks/model_forward.py", "--device", device, "--photos", str(args.photos)]
    if cpu:
        forward += ["--widths", "compact", "--batch-sizes", "1", "--repeats", "1", "--warmup", "0"]
        forward += ["--no-compile", "--no-torchscript", "--peak-size", "256", "--peak-seconds", "0.05"]
        load = ["--preset", "quick", "--device", "cpu", "--compile", "off", "--modes", "batched", "--concurrency", "1"]
        load += ["--duration", "0.5", "--warmup", "0.2", "--soak-requests", "0", "--torch-threads", "1"]
    else:
        forward += ["--widths", "checkpoint", "published", "--batch-sizes", "1", "8", "32", "--repeats", "10"]
        forward += ["--budget", "1", "--no-compile", "--no-torchscript", "--peak-seconds", "0.5"]
        load = ["--preset", "minute", "--device", "cuda"]
    # One batch size: each compiled row compiles once per batch size (Triton, tens of seconds).
    compiled = [python, "benchmarks/model_forward.py", "--device", device, "--rows", "compiled"]
    compiled += ["--batch-sizes", "8", "--repeats", "20", "--budget", "3", "--peak-seconds", "0.2"]
    found = [
        Part("tests", pytest_cmd, 110, "tests.txt", env),
        Part("forward", forward, 90, "forward.md", env, "forward.log"),
        Part("forward, compiled", compiled, 90, "forward-compiled.md", env, "forward-compiled.log"),
        Part("load", [python, "-m", "benchmarks.load", *load, "--out-dir", str(out / "load")], 140, "load.txt", env),
    ]
    return [p for p in found if not (cpu and p.name == "forward, compiled")]  # compiling on a CPU takes minutes


def summary(outcomes: Sequence[Outcome], facts: dict[str, object], total_s: float, cpu: bool) -> str:
    lines = [
        "# GPU check" + (" (CPU dry run: tiny versions, not a result)" if cpu else ""),
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}: {facts.get('GPU', 'no GPU')}, torch {facts.get('torch')} "
        f"(CUDA {facts.get('torch CUDA')}), driver/nvidia-smi: {facts.get('nvidia-smi', 'n/a')}; {total_s:.0f} s in all.",
        "",
        "| part | result | seconds | output | note |",
        "|---|---|---:|---|---|",
    ]
    for o in outcomes:
        lines.append(f"| {o.name} | {o.status} | {o.seconds:.0f} | `{o.output}` | {o.note} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help="where results go (benchmarks/results/gpu)")
    p.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="real photos for the precision check")
    p.add_argument("--no-install", action="store_true", help="skip `pip install --no-deps -e .`")
    p.add_argument("--python", default=sys.executable, help="the interpreter every part runs with (this one)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    cpu = os.environ.get("GPU_CHECK_ALLOW_CPU") == "1"
    python = args.python
    if "torch" in missing_modules(python, ["torch"]):
        print(f"gpu-check: torch does not import in {python}; install PyTorch with CUDA first", file=sys.stderr)
        return 2
    facts = environment(python)
    if not facts.get("CUDA available") and not cpu:
        print(
            f"gpu-check: no CUDA device (torch {facts.get('torch')}, CUDA {facts.get('torch CUDA')}): nothing to "
            "check here (GPU_CHECK_ALLOW_CPU=1 for a CPU dry run)",
            file=sys.stderr,
        )
        return 2
    out: Path = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    install_note = "skipped (--no-install)"
    if not args.no_install:
        # No internet there: nothing may be resolved (--no-deps) or fetched for the build (--no-build-isolation).
        command = [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-e", str(REPO)]
        status, _ = run_captured(command, 120, out / "install.txt")
        install_note = "ok" if status == "pass" else f"{status} (install.txt); the parts import from the checkout"
    missing = missing_modules(python, [*ESSENTIAL, *OPTIONAL, *PROJECT])
    essential = {m: why for m, why in missing.items() if m in ESSENTIAL or m in PROJECT}
    env_lines = ["# Environment of the GPU check", ""] + [f"- {key}: {value}" for key, value in facts.items()]
    env_lines += [f"- `pip install --no-deps -e .`: {install_note}", "", "Imports:", ""]
    for module in [*ESSENTIAL, *OPTIONAL, *PROJECT]:
        need = ESSENTIAL.get(module) or OPTIONAL.get(module) or "this project"
        state = f"MISSING ({missing[module]})" if module in missing else "ok"
        env_lines.append(f"- `{module}` ({need}{', optional' if module in OPTIONAL else ''}): {state}")
    (out / "env.md").write_text("\n".join(env_lines) + "\n")
    print("\n".join(env_lines))
    if essential:
        print("gpu-check: missing essential modules: " + ", ".join(f"{m} ({why})" for m, why in essential.items()))
        (out / "summary.md").write_text(
            summary([Outcome("imports", "fail", 0.0, "env.md", ", ".join(essential))], facts, 0.0, cpu)
        )
        return 1
    outcomes: list[Outcome] = []
    slack = CPU_SLACK if cpu else 1.0
    for part in parts(python, args, cpu):
        left = slack * TOTAL_S - (time.monotonic() - began) - 5.0
        if left < 20:
            outcomes.append(Outcome(part.name, "skipped", 0.0, part.output, "no time left"))
            continue
        limit = min(slack * part.limit_s, left)
        print(f"gpu-check: {part.name} (at most {limit:.0f} s) -> {out / part.output}", flush=True)
        log = out / part.log if part.log else None
        status, seconds = run_captured(part.command, limit, out / part.output, part.env, log)
        note = f"stopped after {limit:.0f} s" if status == "timeout" else ""
        outcomes.append(Outcome(part.name, status, seconds, part.output, note))
        print(f"gpu-check: {part.name}: {status} in {seconds:.0f} s", flush=True)
    text = summary(outcomes, facts, time.monotonic() - began, cpu)
    (out / "summary.md").write_text(text)
    print(text)
    return 0 if all(o.status == "pass" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
