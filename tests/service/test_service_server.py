"""The real thing: `python -m service` under uvicorn on a loopback port, stopped with SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from live_server import free_port, process_exit, service_command, service_env, start_process, wait_ready
from service_test_helpers import gray_image, image_bytes, run_main

from service.__main__ import main


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
    env = service_env(SCGAN_TORCH_THREADS="1", SCGAN_CPU_THREADS="1", SCGAN_LOG_FORMAT="json", SCGAN_MAX_BATCH_SIZE="2")
    process = start_process(service_command(tiny_checkpoint, port), env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/readyz", exited=process_exit(process))
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
