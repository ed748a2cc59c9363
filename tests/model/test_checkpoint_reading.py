"""How a checkpoint is read: files from GPU machines, code that must never run, defaults for what a file leaves
out, and the exact wording of each refusal (users act on it, so it is part of the interface)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_test_helpers import make_generator
from scgan_reference import official_state_dict
from tiny_models import TINY_RGB_IN_CONFIG
from torch_files import MakesADirectory, save_as_on_a_gpu

from model import CheckpointError, GeneratorConfig, Task, read_generator, save_checkpoint
from model.checkpoint import default_task

_X = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(1))


def _refusal(path: Path) -> str:
    with pytest.raises(CheckpointError) as excinfo:
        read_generator(path)
    return str(excinfo.value)


@pytest.fixture(scope="module")
def payload(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = save_checkpoint(tmp_path_factory.mktemp("payload") / "good.pt", make_generator(seed=8))
    return torch.load(path, weights_only=True)


def test_a_checkpoint_saved_on_a_gpu_reads_on_a_cpu_only_machine(tmp_path: Path, payload: dict) -> None:
    net, _ = read_generator(save_as_on_a_gpu(payload, tmp_path / "gpu.pt"))
    assert all(t.device.type == "cpu" for t in net.state_dict().values())
    plain, _ = read_generator(save_checkpoint(tmp_path / "cpu.pt", make_generator(seed=8)))
    with torch.no_grad():
        assert torch.equal(net.predict(_X), plain.predict(_X))


@pytest.mark.parametrize("unsafe_default", ["0", "1"], ids=["torch-default", "forced-unsafe-default"])
def test_code_in_a_checkpoint_never_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload: dict, unsafe_default: str
) -> None:
    marker = tmp_path / "ran"
    evil = dict(payload, metadata={**payload["metadata"], "note": MakesADirectory(marker)})
    path = tmp_path / "evil.pt"
    torch.save(evil, path)
    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 makes torch.load unpickle anything unless weights_only=True is passed.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", unsafe_default)
    assert "refused for safety" in _refusal(path)
    assert not marker.exists()


def test_a_malformed_pickle_is_named_with_its_error(tmp_path: Path) -> None:
    path = tmp_path / "stop.pt"
    path.write_bytes(b"\x80\x02.")  # protocol 2, then STOP with nothing on the stack
    assert _refusal(path) == f"checkpoint {path} is not a readable PyTorch file (IndexError: pop from empty list)"


@pytest.mark.parametrize(("payload_", "kind"), [([1], "list"), (torch.zeros(2), "Tensor"), ("x", "str")])
def test_a_file_that_is_not_a_dict_says_what_it_holds(tmp_path: Path, payload_: object, kind: str) -> None:
    path = tmp_path / "odd.pt"
    torch.save(payload_, path)
    assert _refusal(path) == f"checkpoint {path} holds a {kind}, not a state dict"


def test_every_kind_of_misfit_is_counted_with_three_examples(tmp_path: Path, payload: dict) -> None:
    state = dict(payload["state_dict"])
    names = sorted(state)
    gone = names[:4]
    for name in gone:
        del state[name]
    extra = [f"extra{i}.weight" for i in range(4)]
    state.update({name: torch.zeros(1) for name in extra})
    resized = [name for name in names[4:] if state[name].dim() == 4][:4]
    shapes = {name: tuple(state[name].shape) for name in resized}
    for name in resized:
        state[name] = torch.zeros(1, 1, 1, 1)
    path = tmp_path / "misfit.pt"
    torch.save(dict(payload, state_dict=state), path)
    net_order = [name for name in payload["state_dict"] if name in resized]  # reported in the network's order
    mismatched = [f"{name}: file (1, 1, 1, 1) vs network {shapes[name]}" for name in net_order]
    assert _refusal(path) == (
        f"checkpoint {path} does not fit its network: 4 missing tensors (e.g. {gone[:3]}); "
        f"4 unexpected tensors (e.g. {extra[:3]}); 4 shape mismatches (e.g. {mismatched[:3]})"
    )


def test_a_config_no_network_can_be_built_from_is_named(tmp_path: Path, payload: dict) -> None:
    config = dict(payload["config"], in_channels=2, global_net="efficientnet-lite0")
    path = tmp_path / "config.pt"
    torch.save(dict(payload, config=config), path)
    assert _refusal(path) == (
        f"checkpoint {path} has an invalid config: the EfficientNet-Lite0 global network takes 1 or 3 input "
        "channels, not 2"
    )


def test_a_non_mapping_state_dict_entry_is_read_as_one_more_tensor(tmp_path: Path) -> None:
    # Only a mapping under "state_dict" is a wrapped state dict; anything else is a key of a flat one.
    path = tmp_path / "flat.pth"
    torch.save({**official_state_dict("SCGAN_val", divisor=8), "state_dict": torch.zeros(1)}, path)
    assert _refusal(path) == (f"checkpoint {path} does not fit its network: 1 unexpected tensors (e.g. ['state_dict'])")


@pytest.mark.parametrize(
    ("config", "task"),
    [(GeneratorConfig(), Task.GRAY_TO_RGB), (GeneratorConfig(in_channels=3), Task.NCHANNEL_TO_RGB)],
)
def test_the_default_task_follows_the_input_planes(config: GeneratorConfig, task: Task) -> None:
    assert default_task(config) is task


@pytest.mark.parametrize(("config", "task"), [(None, Task.GRAY_TO_RGB), (TINY_RGB_IN_CONFIG, Task.NCHANNEL_TO_RGB)])
def test_metadata_without_task_or_resolution_gets_the_defaults(
    tmp_path: Path, config: GeneratorConfig | None, task: Task
) -> None:
    net = make_generator(seed=2) if config is None else make_generator(config, seed=2)
    saved = torch.load(save_checkpoint(tmp_path / "full.pt", net, working_resolution=512), weights_only=True)
    for key in ("task", "working_resolution"):
        del saved["metadata"][key]
    path = tmp_path / "sparse.pt"
    torch.save(saved, path)
    info = read_generator(path)[1]
    assert info.task is task and info.working_resolution == 256
