"""Our checkpoint format: round trip, fp16 storage, metadata, folding; and every way a file can be bad."""

from __future__ import annotations

import copy
import datetime as dt
import os
from pathlib import Path

import pytest
import torch
from model_test_helpers import TINY, make_generator
from scgan_reference import official_state_dict

from model import CheckpointError, Task, fold_spectral_norm, load_generator, read_generator, save_checkpoint
from model.checkpoint import FORMAT_NAME, FORMAT_VERSION, resave_checkpoint
from model.layers import SpectralNorm, has_spectral_norm

_X = torch.rand(2, 1, 256, 256, generator=torch.Generator().manual_seed(0))


def _predict(net: torch.nn.Module, x: torch.Tensor = _X) -> torch.Tensor:
    with torch.no_grad():
        return net.eval().predict(x)  # type: ignore[operator]


@pytest.fixture(scope="module")
def trained_like() -> torch.nn.Module:
    """An unfolded (spectral-norm) generator with non-trivial BN statistics."""
    return make_generator(seed=5)


@pytest.fixture(scope="module")
def reference_output(trained_like: torch.nn.Module) -> torch.Tensor:
    return _predict(trained_like)


def test_fp32_round_trip_is_exact(
    tmp_path: Path, trained_like: torch.nn.Module, reference_output: torch.Tensor
) -> None:
    path = save_checkpoint(tmp_path / "g.pt", trained_like)
    loaded = load_generator(path, device="cpu")
    torch.testing.assert_close(_predict(loaded), reference_output, rtol=0, atol=0)
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # written atomically


def test_saving_leaves_the_generator_untouched(tmp_path: Path) -> None:
    net = make_generator(seed=6).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    save_checkpoint(tmp_path / "g.pt", net)
    assert net.training and has_spectral_norm(net)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_fp16_storage(tmp_path: Path, trained_like: torch.nn.Module, reference_output: torch.Tensor) -> None:
    path32 = save_checkpoint(tmp_path / "g32.pt", trained_like)
    path16 = save_checkpoint(tmp_path / "g16.pt", trained_like, dtype=torch.float16)
    stored = torch.load(path16, weights_only=True)["state_dict"]
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    assert stored["down2.norm.num_batches_tracked"].dtype == torch.long
    assert path16.stat().st_size < 0.7 * path32.stat().st_size
    loaded = load_generator(path16, device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    out = _predict(loaded)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference_output, rtol=0, atol=2e-2)
    assert (out - reference_output).abs().mean() < 2e-3


def test_metadata_round_trip(tmp_path: Path, trained_like: torch.nn.Module) -> None:
    training_data = {"dataset": "imagenet-subset", "images": 1234, "splits": ["train"]}
    metrics = {"psnr": 24.5, "ssim": 0.91, "cci_in_range": 0.42}
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    path = save_checkpoint(
        tmp_path / "g.pt",
        trained_like,
        task=Task.GRAY_TO_RGB,
        working_resolution=512,
        training_data=training_data,
        metrics=metrics,
        extra={"git_commit": "abc123"},
    )
    net, info = read_generator(path)
    assert info.source_format == FORMAT_NAME
    assert info.task is Task.GRAY_TO_RGB
    assert info.working_resolution == 512
    assert info.config == TINY == net.config
    assert info.has_saliency and net.has_saliency
    assert info.metadata["training_data"] == training_data
    assert info.metadata["metrics"] == metrics
    assert info.metadata["git_commit"] == "abc123"
    created = dt.datetime.fromisoformat(info.metadata["created_at"])
    assert created.tzinfo is not None
    assert before <= created <= dt.datetime.now(dt.UTC)
    assert net.checkpoint_info == info  # type: ignore[attr-defined]

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT_NAME and raw["format_version"] == FORMAT_VERSION
    assert raw["config"] == TINY.to_dict()


def test_task_string_and_default(tmp_path: Path) -> None:
    net = make_generator(seed=7, with_saliency=False)
    _, info = read_generator(save_checkpoint(tmp_path / "a.pt", net, task="nchannel->rgb"))
    assert info.task is Task.NCHANNEL_TO_RGB and not info.has_saliency
    _, info = read_generator(save_checkpoint(tmp_path / "b.pt", net))
    assert info.task is Task.GRAY_TO_RGB  # one input channel
    with pytest.raises(ValueError):
        save_checkpoint(tmp_path / "c.pt", net, task="rgb->gray")


def test_spectral_norm_is_folded(tmp_path: Path, trained_like: torch.nn.Module) -> None:
    path = save_checkpoint(tmp_path / "g.pt", trained_like)
    raw = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.endswith(("weight_bar", "weight_u", "weight_v")) for k in raw)
    loaded = load_generator(path, device="cpu")
    assert not any(isinstance(m, SpectralNorm) for m in loaded.modules())
    assert not loaded.training


def test_folded_equals_unfolded_in_eval_mode(trained_like: torch.nn.Module, reference_output: torch.Tensor) -> None:
    folded = fold_spectral_norm(copy.deepcopy(trained_like).eval())
    assert has_spectral_norm(trained_like) and not has_spectral_norm(folded)
    torch.testing.assert_close(_predict(folded), reference_output, rtol=0, atol=0)
    with torch.no_grad():
        _, sal_folded = folded(_X, return_saliency=True)
        _, sal_unfolded = trained_like.eval()(_X, return_saliency=True)
    torch.testing.assert_close(sal_folded, sal_unfolded, rtol=0, atol=0)


# --------------------------------------------------------------------------------------
# Bad files: every failure is a CheckpointError that names the file.
# --------------------------------------------------------------------------------------

_EXECUTED = Path(os.environ.get("TMPDIR", "/tmp")) / "scgan-test-pickle-executed"


def _side_effect() -> None:  # pragma: no cover - must never run
    _EXECUTED.write_text("ran")


class _Payload:
    """A custom class whose unpickling would run code; weights_only must refuse it."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_side_effect, ())


class _Plain:
    def __init__(self) -> None:
        self.weights = torch.zeros(3)


def _expect_error(path: Path, *fragments: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as excinfo:
        read_generator(path)
    message = str(excinfo.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    with pytest.raises(CheckpointError):
        load_generator(path, device="cpu")
    return excinfo.value


@pytest.fixture(scope="module")
def good_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("good") / "good.pt", make_generator(seed=8))


def test_missing_file(tmp_path: Path) -> None:
    _expect_error(tmp_path / "nope.pt", "does not exist")


def test_directory(tmp_path: Path) -> None:
    _expect_error(tmp_path, "not a file")


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.99])
def test_truncated_file(tmp_path: Path, good_file: Path, fraction: float) -> None:
    data = good_file.read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: int(len(data) * fraction)])
    _expect_error(path)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_bytes(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "random.pt"
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
    path.write_bytes(noise.numpy().tobytes())
    _expect_error(path)


@pytest.mark.parametrize("prefix", [b"\x80\x02", b"\x80\x04", b"PK\x03\x04"])
def test_bytes_with_pickle_or_zip_magic(tmp_path: Path, prefix: bytes) -> None:
    # Random bytes behind a pickle protocol or zip header reach deep into the unpickler;
    # whatever it raises must come out as CheckpointError.
    for seed in range(8):
        path = tmp_path / f"magic{seed}.pt"
        noise = torch.randint(0, 256, (256,), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)
        path.write_bytes(prefix + noise.numpy().tobytes())
        _expect_error(path)
    path = tmp_path / "memo.pt"
    path.write_bytes(b"\x80\x02randomgarbage" * 10)
    _expect_error(path)


@pytest.mark.parametrize("obj", [_Payload(), _Plain(), {"state_dict": _Plain()}])
def test_arbitrary_classes_are_refused(tmp_path: Path, obj: object) -> None:
    path = tmp_path / "evil.pt"
    torch.save(obj, path)
    _EXECUTED.unlink(missing_ok=True)
    error = _expect_error(path, "refused")
    assert isinstance(error.__cause__, Exception)
    assert not _EXECUTED.exists()


def test_foreign_state_dict(tmp_path: Path) -> None:
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    _expect_error(path, "neither")


@pytest.mark.parametrize("payload", [[torch.zeros(3)], torch.zeros(3), "hello", 42])
def test_not_a_dict(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "odd.pt"
    torch.save(payload, path)
    _expect_error(path)


def test_shape_mismatch_in_our_format(tmp_path: Path, good_file: Path) -> None:
    payload = torch.load(good_file, weights_only=True)
    payload["state_dict"]["up5.conv2d.conv2d.weight"] = torch.zeros(32, 64, 1, 1)
    path = tmp_path / "mismatch.pt"
    torch.save(payload, path)
    _expect_error(path, "shape", "up5.conv2d.conv2d.weight")


def test_missing_and_unexpected_tensors_in_our_format(tmp_path: Path, good_file: Path) -> None:
    payload = torch.load(good_file, weights_only=True)
    del payload["state_dict"]["up9.conv2d.weight"]
    payload["state_dict"]["extra.weight"] = torch.zeros(1)
    path = tmp_path / "keys.pt"
    torch.save(payload, path)
    _expect_error(path, "missing", "unexpected")


def test_config_that_does_not_match_the_weights(tmp_path: Path, good_file: Path) -> None:
    payload = torch.load(good_file, weights_only=True)
    payload["config"]["start_channels"] = 16
    path = tmp_path / "config.pt"
    torch.save(payload, path)
    _expect_error(path, "does not fit")


@pytest.mark.parametrize(
    "change",
    [
        {"config": {"start_channels": 8, "bogus": 1}},
        {"config": {"start_channels": 0}},
        {"config": None},
        {"state_dict": None},
        {"metadata": {"task": "rgb->gray"}},
        {"metadata": {"working_resolution": "big"}},
    ],
)
def test_malformed_header(tmp_path: Path, good_file: Path, change: dict[str, object]) -> None:
    payload = torch.load(good_file, weights_only=True)
    payload.update(change)
    path = tmp_path / "header.pt"
    torch.save(payload, path)
    _expect_error(path)


def test_non_tensor_entries(tmp_path: Path, good_file: Path) -> None:
    payload = torch.load(good_file, weights_only=True)
    payload["state_dict"]["up9.conv2d.weight"] = [1.0, 2.0]
    path = tmp_path / "nontensor.pt"
    torch.save(payload, path)
    _expect_error(path, "non-tensor")


@pytest.mark.parametrize("version", [0, 2, None, "1"])
def test_wrong_format_version(tmp_path: Path, good_file: Path, version: object) -> None:
    payload = torch.load(good_file, weights_only=True)
    payload["format_version"] = version
    path = tmp_path / "version.pt"
    torch.save(payload, path)
    _expect_error(path, "format version")


def test_official_style_with_a_wrong_shape(tmp_path: Path) -> None:
    state = official_state_dict("SCGAN_val", divisor=8)
    state["up5.conv2d.conv2d.module.weight_bar"] = torch.zeros(64, 100, 3, 3)
    path = tmp_path / "official_mismatch.pth"
    torch.save(state, path)
    _expect_error(path, "up5.conv2d.conv2d.module.weight_bar")


def test_official_style_incomplete(tmp_path: Path) -> None:
    state = official_state_dict("SCGAN_val", divisor=8)
    del state["up9.conv2d.module.weight_bar"]
    path = tmp_path / "official_incomplete.pth"
    torch.save(state, path)
    _expect_error(path)


def test_official_discriminator_is_not_a_generator(tmp_path: Path) -> None:
    path = tmp_path / "D.pth"
    torch.save(official_state_dict("PatchDiscriminator70"), path)
    _expect_error(path, "neither")


def test_saved_checkpoints_are_readable_by_other_users(tmp_path: Path, trained_like: torch.nn.Module) -> None:
    """Written atomically, yet with the umask's usual mode (not mkstemp's 0600): a non-root server must read it."""
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "shared.pt", trained_like)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_refused_object_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save(_Plain(), path)
    message = str(_expect_error(path))
    assert "\n" not in message
    assert message.startswith(
        f"checkpoint {path} holds objects other than tensors and plain data, refused for safety ("
    )
    # torch's multi-line explanation is cut to the line that names the class
    assert message.endswith(")") and "Unsupported global: GLOBAL test_checkpoint._Plain" in message
    assert "Weights only load failed" not in message


def test_a_broken_file_is_explained_by_the_first_line_of_its_error(tmp_path: Path, good_file: Path) -> None:
    path = tmp_path / "half.pt"
    path.write_bytes(good_file.read_bytes()[: len(good_file.read_bytes()) // 2])
    error = _expect_error(path)
    first = next(line.strip() for line in str(error.__cause__).splitlines() if line.strip())
    assert str(error) == f"checkpoint {path} is truncated or not a PyTorch file ({first})"
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert str(_expect_error(empty)).startswith(f"checkpoint {empty} is truncated or not a PyTorch file (")


def test_error_details_are_one_line() -> None:
    from model.checkpoint import _first_line

    assert _first_line(EOFError()) == "EOFError"
    assert _first_line(RuntimeError("\n \nfirst line\nsecond line")) == "first line"
    many = RuntimeError("Weights only load failed.\n explanation\n  Unsupported global: GLOBAL x.Y was not allowed \n")
    assert _first_line(many) == "Unsupported global: GLOBAL x.Y was not allowed"


def test_defaults_and_saliency_are_recorded(tmp_path: Path) -> None:
    plain = make_generator(seed=9, with_saliency=False)
    info = read_generator(save_checkpoint(tmp_path / "plain.pt", plain))[1]
    assert info.working_resolution == 256 and info.task is Task.GRAY_TO_RGB
    assert info.metadata["has_saliency"] is False and not info.has_saliency
    assert info.metadata["training_data"] == {} and info.metadata["metrics"] == {}
    assert info.metadata["torch_version"] == str(torch.__version__)


def test_convert_official_records_where_the_weights_came_from(tmp_path: Path) -> None:
    import hashlib

    from model.checkpoint import convert_official

    src = tmp_path / "SCGAN_val.pth"
    torch.save(official_state_dict("SCGAN_val", divisor=8), src)
    official, official_info = read_generator(src)
    net, info = read_generator(convert_official(src, tmp_path / "converted.pt"))
    assert info.source_format == FORMAT_NAME and official_info.source_format == "official"
    assert (info.task, info.working_resolution, info.config) == (
        official_info.task,
        official_info.working_resolution,
        official_info.config,
    )
    assert info.metadata["training_data"] == {
        "description": "converted from an official SCGAN release (ImageNet, per the paper)"
    }
    assert info.metadata["converted_from"] == "SCGAN_val.pth"
    assert info.metadata["converted_sha256"] == official_info.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert torch.equal(_predict(net), _predict(official))
    ours = save_checkpoint(tmp_path / "ours.pt", make_generator(seed=3))
    with pytest.raises(CheckpointError, match=rf"^checkpoint {ours} is not an official SCGAN state dict$"):
        convert_official(ours, tmp_path / "again.pt")


def test_official_files_describe_themselves(tmp_path: Path) -> None:
    state = official_state_dict("SCGAN", divisor=8)
    path = tmp_path / "official.pth"
    torch.save(state, path)
    net, info = read_generator(path)
    assert info.metadata == {"task": "gray->rgb", "working_resolution": 256, "source": "official SCGAN release"}
    assert info.has_saliency and net.has_saliency
    # Without the attention network the latent width cannot be read from the file: the published 128.
    plain = tmp_path / "no-saliency.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("attention_prediction_network.")}, plain)
    net, info = read_generator(plain)
    assert not info.has_saliency and not net.has_saliency and info.config.latent_channels == 128


def test_resave_keeps_the_record_and_applies_changes(tmp_path: Path, trained_like: torch.nn.Module) -> None:
    """A derived checkpoint keeps the source's task, size, data, metrics and extras unless told otherwise."""
    training_data = {"images": 12}
    src = save_checkpoint(
        tmp_path / "src.pt",
        trained_like,
        task=Task.NCHANNEL_TO_RGB,  # not the default for one input channel
        working_resolution=384,
        training_data=training_data,
        metrics={"psnr": 24.5},
        extra={"git_commit": "abc", "step": 7},
    )
    net, info = read_generator(src)

    same = read_generator(resave_checkpoint(tmp_path / "same.pt", net, info))[1]
    assert same.task is Task.NCHANNEL_TO_RGB and same.working_resolution == 384
    assert same.metadata["training_data"] == training_data
    assert same.metadata["metrics"] == {"psnr": 24.5}
    assert same.metadata["git_commit"] == "abc" and same.metadata["step"] == 7
    assert same.metadata["created_at"] >= info.metadata["created_at"]
    kept = torch.load(tmp_path / "same.pt", weights_only=True)["state_dict"]
    assert {t.dtype for t in kept.values() if t.is_floating_point()} == {torch.float32}

    path = resave_checkpoint(
        tmp_path / "derived.pt",
        net,
        info,
        extra={"source_sha256": "f00d"},
        metrics={},
        drop=("step",),
        dtype=torch.float16,
    )
    derived = read_generator(path)[1]
    assert derived.task is Task.NCHANNEL_TO_RGB
    assert derived.metadata["metrics"] == {}
    assert "step" not in derived.metadata
    assert derived.metadata["git_commit"] == "abc" and derived.metadata["source_sha256"] == "f00d"
    state = torch.load(path, weights_only=True)["state_dict"]
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float16}
