"""Fast checks of the benchmarks' helpers: CPU accounting of process trees, the compiled A/B's options, gpu-check."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _script(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO))
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_cpu_at_interpolates_between_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.load.clients import cpu_at

    samples = [(0.0, 1.0, 10.0), (1.0, None, 11.0), (2.0, 3.0, 12.0)]
    assert cpu_at(samples, 1.0, 1) == pytest.approx(2.0)  # the None sample is skipped
    assert cpu_at(samples, 0.5, 2) == pytest.approx(10.5)
    assert cpu_at(samples, -1.0, 1) == 1.0 and cpu_at(samples, 5.0, 2) == 12.0  # held at the ends
    assert cpu_at([(0.0, None, 1.0)], 0.0, 1) is None


def test_a_servers_cpu_includes_its_worker_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child process that burns CPU is in the tree, and its CPU in the tree's sum."""
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.load.system import process_cpu_s, process_tree, process_tree_cpu_s

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", burn])
    try:
        deadline = time.monotonic() + 60
        while (process_cpu_s(child.pid) or 0.0) < 0.25:
            assert time.monotonic() < deadline, "the child did not burn its CPU in time"
            time.sleep(0.05)
        assert child.pid in process_tree(os.getpid())
        own = process_cpu_s(os.getpid())
        total = process_tree_cpu_s(os.getpid())
        assert own is not None and total is not None and total - own >= 0.25
    finally:
        child.kill()
        child.wait()


def test_the_compiled_rows_default_to_the_starter_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _script(monkeypatch, "model_forward")
    from model.device import resolve_precision

    args = module.parse_args(["--rows", "compiled", "--device", "cpu"])
    assert args.widths == ["checkpoint"] and args.compile
    ours, plain = module.compiled_pair(torch.device("cpu"))
    precision = resolve_precision("auto", torch.device("cpu"))
    assert ours.name.startswith(precision) and plain.name.startswith(precision)
    assert ours.autocast is plain.autocast and ours.compiled and plain.compiled
    with pytest.raises(SystemExit):
        module.parse_args(["--rows", "compiled", "--no-compile", "--device", "cpu"])
    rounds = [{ours.name: 2.0, plain.name: 1.0}, {ours.name: 3.0}, {ours.name: 1.0, plain.name: 1.0}]
    assert module.pair_ratios(rounds, ours.name, plain.name) == [2.0, 1.0]  # rounds where both ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer of a machine without CUDA")
def test_gpu_check_says_no_cuda_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "GPU_CHECK_ALLOW_CPU"}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out-dir", str(tmp_path / "gpu")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("gpu-check: no CUDA device") and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gpu").exists()  # nothing installed, nothing written


def test_gpu_check_dry_run_plans_tiny_parts_on_the_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    module = _script(monkeypatch, "gpu_check")
    args = module.parse_args(["--out-dir", str(tmp_path), "--no-install"])
    on_cpu = module.parts(sys.executable, args, cpu=True)
    on_gpu = module.parts(sys.executable, args, cpu=False)
    assert [p.name for p in on_cpu] == ["tests", "forward", "load"]
    assert [p.name for p in on_gpu] == ["tests", "forward", "forward, compiled", "load"]
    assert sum(p.limit_s for p in on_gpu) <= module.TOTAL_S - 20  # room for install and imports
    assert all("cuda" in p.command for p in on_gpu if "--device" in p.command)
    assert args.photos.is_dir() and any(args.photos.glob("*.jpg"))  # the committed real photos


def test_load_baseline_joins_the_run_only_when_a_checkout_is_named(tmp_path: Path) -> None:
    from benchmarks.load.config import DEFAULT_MODES, LoadConfig, parse_args

    full = parse_args(["--max-batch-size", "4"])
    assert isinstance(full, LoadConfig) and full.modes == DEFAULT_MODES and "baseline" not in full.modes
    with_baseline = parse_args(["--preset", "bar", "--max-batch-size", "4", "--baseline", str(REPO)])
    assert isinstance(with_baseline, LoadConfig)
    assert with_baseline.modes == ["baseline", "batched-1w", "batched"] and with_baseline.baseline == REPO
    with pytest.raises(SystemExit):
        parse_args(["--baseline", str(tmp_path)])  # not a checkout of this project
    with pytest.raises(SystemExit):
        parse_args(["--modes", "baseline", "--max-batch-size", "4"])


def _row(dpsnr: float, matched: float, warm: float = 0.8, green: float = 0.1, blue: float = 0.4) -> dict[str, float]:
    return {"dpsnr": dpsnr, "matched": matched, "warm": warm, "green": green, "blue": blue}


def test_the_decoding_rule_takes_the_best_matched_value_keeping_the_hues(monkeypatch: pytest.MonkeyPatch) -> None:
    choose = _script(monkeypatch, "decoding_sweep").choose
    base = _row(1.0, 1.0)
    rows = {
        0.38: base,
        0.2: _row(0.5, 1.3, green=0.09),  # best matched, but paints less green
        0.3: _row(0.8, 1.2),  # qualifies
        0.45: _row(1.2, 1.1, blue=0.5),
        0.7: _row(-0.1, 1.4, green=0.2),  # negative dPSNR
        1.0: _row(1.0, 1.25, warm=0.6),  # warm below the bar
    }
    assert choose(rows, base=0.38) == 0.3
    assert choose({0.38: base, 0.3: _row(1.1, 1.0)}, base=0.38) == 0.38  # a tie keeps the checkpoint's decoding
    assert choose({0.38: base, 0.2: _row(0.5, 1.3, green=0.0)}, base=0.38) == 0.38  # none qualifies
    assert choose({0.0: base, 0.15: _row(1.1, 1.05)}) == 0.15  # base defaults to tau = 0


def test_set_decoding_decodes_at_the_temperature_prior_and_gain_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from model.chroma_bins import annealed_mean, bin_centres
    from model.config import GeneratorConfig
    from model.encoder_generator import EncoderGenerator

    set_decoding = _script(monkeypatch, "decoding_sweep").set_decoding
    torch.manual_seed(0)
    config = GeneratorConfig(encoder="efficientnet-lite0", decoder_channels=8, chroma_head="bins")
    net = EncoderGenerator(config, with_saliency=False).eval()
    head = torch.randn(1, bin_centres().shape[0], 4, 4)
    log_prior = torch.log_softmax(torch.randn(bin_centres().shape[0]), 0)
    colorizer = SimpleNamespace(generator=net)
    trained = net.chroma_of(head)

    set_decoding(colorizer, log_prior, 0.0, 0.38)
    assert torch.allclose(net.chroma_of(head), trained)
    set_decoding(colorizer, None, 0.0, 0.7)
    assert torch.allclose(net.chroma_of(head), annealed_mean(head, bin_centres(), 0.7))
    assert not torch.allclose(net.chroma_of(head), trained)
    set_decoding(colorizer, log_prior, 0.5, 0.3)
    expected = annealed_mean(head - 0.5 * log_prior.view(1, -1, 1, 1), bin_centres(), 0.3)
    assert torch.allclose(net.chroma_of(head), expected)
    set_decoding(colorizer, None, 0.0, 0.38, 0.5)
    assert torch.allclose(net.chroma_of(head), 0.5 * trained)
    set_decoding(colorizer, None, 0.0, 0.38, guide=lambda logits: 0.2 * logits.flip(1))
    assert torch.allclose(net.chroma_of(head), annealed_mean(head + 0.2 * head.flip(1), bin_centres(), 0.38))


def test_the_probe_guide_gives_each_bin_its_class_log_probability(monkeypatch: pytest.MonkeyPatch) -> None:
    from torch import nn

    from model.config import GeneratorConfig
    from model.encoder_generator import EncoderGenerator

    module = _script(monkeypatch, "probe_guided_decoding")
    torch.manual_seed(0)
    net = EncoderGenerator(GeneratorConfig(encoder="efficientnet-lite0", decoder_channels=8, chroma_head="bins"))
    net.eval()
    classes = module.bin_classes(net.get_buffer("bin_centres"))
    assert int((classes == module.NEUTRAL).sum()) == 1 and set(classes.tolist()) == set(range(5))
    features = sum(
        net.trunk.stages(torch.zeros(1, 3, 64, 64), (*net.skip_blocks, -1))[b].shape[1] for b in (*net.skip_blocks, -1)
    )
    probe = nn.Linear(features, 5)
    guide = module.ProbeGuide(net, probe, torch.zeros(features), torch.ones(features))
    with torch.no_grad():
        _, _, head = net(torch.rand(2, 1, 96, 64), return_head=True)
        log_q = guide.log_q(head)
    assert log_q.shape == head.shape
    per_class = torch.stack([log_q[:, (classes == k).nonzero()[0, 0]] for k in range(5)], 1)
    assert torch.allclose(per_class.exp().sum(1), torch.ones(2, 48, 32), atol=1e-5)
    for k in range(5):
        assert torch.allclose(log_q[:, classes == k], per_class[:, k : k + 1].expand_as(log_q[:, classes == k]))


def test_a_retrained_head_learns_which_features_mean_green(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from model.chroma_bins import annealed_mean, bin_centres
    from model.color import combine_luma_chroma
    from training.hue import HUES, hue_classes

    module = _script(monkeypatch, "head_retrain")
    torch.manual_seed(0)
    features = torch.cat([torch.randn(6, 3, 16, 16), torch.ones(6, 1, 16, 16)], 1)  # the head has no bias
    green = features[:, :1] > 0  # channel 0 says green, else red
    leaf, brick = torch.tensor([40.0, 160.0, 40.0]), torch.tensor([180.0, 50.0, 40.0])
    colour = torch.where(green, leaf.view(1, 3, 1, 1), brick.view(1, 3, 1, 1))
    targets = colour.repeat_interleave(2, -1).repeat_interleave(2, -2).to(torch.uint8)  # at twice the features' size
    centres = bin_centres()
    head = module.train_head(None, features.half(), targets, np.ones(6), 200, centres, crop=8, lr=1e-2)
    with torch.no_grad():
        rgb = combine_luma_chroma(torch.full((6, 1, 16, 16), 0.45), annealed_mean(head(features), centres))
    painted = hue_classes(rgb.mul(255).round().byte().permute(0, 2, 3, 1).numpy(), 6.0)
    want = np.where(green[:, 0].numpy(), HUES.index("green"), HUES.index("warm"))
    assert (painted == want).mean() > 0.9


def test_the_scaling_probe_pools_recall_by_photo_weight_and_extrapolates_in_log_photos(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from training.hue import HUES

    module = _script(monkeypatch, "hue_probe_scaling")
    warm, green = HUES.index("warm"), HUES.index("green")
    # Photo A: 2 sampled green pixels standing for 10 (one right); photo B: 2 standing for 2 (both wrong).
    truth = torch.tensor([green, green, green, green])
    predicted = torch.tensor([green, warm, warm, warm])
    weight = torch.tensor([5.0, 5.0, 1.0, 1.0])
    assert module.pooled_recall(predicted, truth, weight)["green"] == pytest.approx(5 / 12)
    # Green gains 0.1 a doubling from 0.15 at 32 photos: 0.45 at 32 * 2**3 = 256 photos.
    counts = [32, 64, 128]
    recalls = {"warm": [0.7] * 3, "green": [0.15, 0.25, 0.35], "blue": [0.72] * 3}
    assert module.photos_at_bar(counts, recalls["green"], 0.45) == pytest.approx(256)
    assert module.photos_for_all_bars(counts, recalls) == "about 256 (green)"
    assert module.photos_for_all_bars(counts, {**recalls, "green": [0.4, 0.45, 0.5]}) == "met"
    assert module.photos_for_all_bars(counts, {**recalls, "blue": [0.6, 0.6, 0.5]}) == "over a million (blue)"


def test_inference_views_keep_the_aspect_average_the_sizes_and_count_the_pixels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model.pipeline import PreparedImage

    module = _script(monkeypatch, "inference_views")
    assert module.working_size("square", 288, 512) == (256, 256)
    assert module.working_size("long", 300, 512) == (160, 256)  # 150 rounds to the stride of 32
    assert module.working_size("short", 288, 512) == (256, 448)  # 455 rounds down
    assert module.working_size("area", 256, 1024, 256) == (128, 512)

    seen: list[tuple[int, ...]] = []

    class Pipeline:  # the two stages a view replaces; the network paints each pixel its column's parity
        batch_size = 8

        def prepare(self, image: object, render_size: int | None = None, hints: object = None) -> PreparedImage:
            luma = torch.rand(1, 288, 512)
            planes = torch.cat((torch.zeros(1, 256, 256), torch.full((3, 256, 256), 0.5)))
            return PreparedImage(luma=luma, alpha=None, model_input=planes, render_size=256)

        def predict(self, batch: torch.Tensor, *, saliency: bool = False) -> tuple[torch.Tensor, None]:
            seen.append(tuple(batch.shape))
            column = torch.arange(batch.shape[-1]) % 2
            return column.float().expand(batch.shape[0], 3, batch.shape[-2], -1).clone(), None

    pipeline = Pipeline()
    viewed = module.ViewedColorizer(pipeline)
    viewed.set(module.View("short side", "short"))
    prepared = pipeline.prepare(None)
    assert prepared.model_input.shape == (4, 256, 448)
    assert torch.equal(prepared.model_input[1:], torch.full((3, 256, 448), 0.5))  # the hint planes carried over
    out, _ = pipeline.predict(prepared.model_input[None])
    assert seen[-1] == (1, 4, 256, 448) and out.shape == (1, 3, 256, 448)
    assert viewed.cost == pytest.approx(448 / 256) and pipeline.batch_size == 1

    viewed.set(module.View("mirror", mirror=True))
    out, _ = pipeline.predict(torch.zeros(2, 4, 256, 256))
    assert torch.allclose(out, torch.full_like(out, 0.5))  # a column's parity and its mirror's: 0 and 1
    assert viewed.cost == pytest.approx(2.0)

    viewed.set(module.View("two sizes", sides=(128, 256)))
    prepared = pipeline.prepare(None)
    assert prepared.model_input.shape == (4, 256, 256)
    seen.clear()
    out, _ = pipeline.predict(prepared.model_input[None])
    assert [s[-1] for s in seen] == [128, 256] and out.shape == (1, 3, 256, 256)
    assert viewed.cost == pytest.approx(1.25)


def test_the_paired_comparison_counts_photos_and_brackets_the_mean(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _script(monkeypatch, "inference_views")
    base = [1.0, 2.0, 3.0, 4.0]
    p = module.paired(base, [1.5, 1.0, 3.5, 4.0])  # +0.5, -1, +0.5, 0
    assert p["mean"] == pytest.approx(0.0) and p["improved"] == 2
    assert p["even"] == pytest.approx(0.5) and p["odd"] == pytest.approx(-0.5)
    assert -1.0 <= p["low"] < 0.0 < p["high"] <= 0.5
    same = module.paired(base, [b + 0.25 for b in base])
    assert same["low"] == pytest.approx(0.25) and same["high"] == pytest.approx(0.25) and same["improved"] == 4
