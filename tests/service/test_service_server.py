"""The real thing: `python -m service` under uvicorn on a loopback port, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from service_test_helpers import gray_image, image_bytes, run_main

from service.__main__ import main

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "SCGAN_" in capsys.readouterr().out


def test_invalid_configuration_exits_with_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCGAN_MAX_BATCH_SIZE", "0")
    assert run_main([]) == 2


def test_serves_over_real_http_and_stops_on_sigterm(tiny_checkpoint: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCGAN_")}
    env["SCGAN_COMPILE"] = "off"  # see tests/conftest.py
    env.update(SCGAN_TORCH_THREADS="1", SCGAN_CPU_THREADS="1", SCGAN_LOG_FORMAT="json", SCGAN_MAX_BATCH_SIZE="2")
    command = [sys.executable, "-m", "service", "--checkpoint", str(tiny_checkpoint), "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        data = image_bytes(gray_image(50, 40), "PNG")
        response = httpx.post(f"{base}/colorize", files={"file": ("in.png", data, "image/png")}, timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        too_big = httpx.post(
            f"{base}/colorize", content=b"\0" * (21 * 1024 * 1024), headers={"content-type": "image/png"}, timeout=30
        )
        assert too_big.status_code == 413
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        # uvicorn drains, runs the lifespan shutdown, then re-raises the signal it caught; main() makes that a 0.
        assert process.returncode == 0, output
        assert '"shutdown complete"' in output
        assert '"logger": "service.access"' in output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
