"""Re-training only the classification head of a bins-head checkpoint with hue-balanced sampling (cRT).

Green is a rare colour in the training photos (8.8% of the clearly coloured pixels against 57% warm), and the
starter paints almost none of the validation photos' greens. In long-tailed recognition, the representation
learnt on the natural distribution is kept and only the classifier is re-trained with class-balanced sampling
(Kang et al., ICLR 2020, "Decoupling representation and classifier", cRT). Here the classifier is the
generator's last layer, a 1 x 1 convolution from the decoder's half-resolution features to the chroma bins; the
rest of the network is frozen, so its features are computed once (each training photo at 256 x 256 and its
mirror image, no hints) and cached.

Candidates, each trained on the cached features with the unweighted bins loss and Adam (lr 1e-3, batches of
8 images, one random 64 x 64 crop of the half-resolution features each step), photos drawn by ``hue_balanced_weights`` at the balance given:

* ``crt``: a head from scratch, balance 1.0, 2000 steps (Kang et al.'s cRT);
* ``ft-500``, ``ft-2000``: the checkpoint's head fine-tuned, balance 1.0, 500 and 2000 steps;
* ``ft-2000-unbalanced``: the same, balance 0 (the control: what re-training alone does).

They are chosen on the validation split by the rule the decoding studies use (``decoding_sweep.choose``),
fixed before any figure was seen: among the candidates with a positive mean dPSNR, green and blue hue recall
no worse than the checkpoint's and warm recall at least 0.65, the highest dPSNR at matched colourfulness
(ties and no qualifying candidate keep the checkpoint's head). Two-fold cross-validation shows how much that
choice flatters itself.

    python benchmarks/head_retrain.py [--checkpoint CKPT] [--out benchmarks/results/head_retrain.md]
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.decoding_sweep import WARM_BAR, bins_generator, choose, cross_validation, sweep, table
from benchmarks.photo_study import emit, open_study
from model.color import rgb_to_gray
from model.config import HINT_PLANES
from model.encoder_generator import EncoderGenerator
from training.colour_losses import bins_loss
from training.hue import hue_balanced_weights, hue_shares

SIZE = 256  # the generator's working size
STEPS_SCRATCH, BATCH, LR = 2000, 8, 1e-3
SEEN = 35  # training photos scored beside the validation split, as many as it holds
CROP = 64  # a random crop of the half-resolution features per step (one quarter of them)
#: name -> (start from the checkpoint's head, hue balance, steps)
CANDIDATES: dict[str, tuple[bool, float, int]] = {
    "crt": (False, 1.0, STEPS_SCRATCH),
    "ft-500": (True, 1.0, 500),
    "ft-2000": (True, 1.0, 2000),
    "ft-2000-unbalanced": (True, 0.0, 2000),
}


def _images(paths: list[Path]) -> torch.Tensor:
    """N x 3 x SIZE x SIZE uint8: each photo resized, then its mirror image."""
    out = []
    for path in paths:
        with Image.open(path) as image:
            rgb = torch.from_numpy(np.array(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC)))
        out += [rgb.permute(2, 0, 1), rgb.permute(2, 0, 1).flip(-1)]
    return torch.stack(out)


def head_features(net: EncoderGenerator, images: torch.Tensor) -> torch.Tensor:
    """N x C x SIZE/2 x SIZE/2 (fp16): what the head sees for each image's gray version, without hints."""
    seen: list[torch.Tensor] = []
    handle = net.head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].half()))
    try:
        with torch.no_grad():
            for image in images:
                gray = rgb_to_gray(image[None].float().div(255.0))
                planes = torch.zeros(1, HINT_PLANES if net.config.hints else 0, SIZE, SIZE)
                net(torch.cat([gray, planes], 1), return_saliency=False)
    finally:
        handle.remove()
    return torch.cat(seen)


def train_head(
    start: nn.Conv2d | None,
    features: torch.Tensor,
    targets: torch.Tensor,
    sample_weights: np.ndarray,
    steps: int,
    centres: torch.Tensor,
    crop: int = CROP,
    lr: float = LR,
) -> nn.Conv2d:
    """A 1 x 1 head trained on cached features (N x C x h x w) against N x 3 x 2h x 2w uint8 targets with the
    unweighted bins loss, images drawn by ``sample_weights``, one random ``crop`` x ``crop`` window a step."""
    head = nn.Conv2d(features.shape[1], centres.shape[0], 1, bias=False)  # as the generator's head
    if start is not None:
        head.load_state_dict(start.state_dict())
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(0)
    draw = torch.from_numpy(sample_weights).float()
    flat = torch.ones(centres.shape[0])
    for _ in range(steps):
        index = torch.multinomial(draw, BATCH, replacement=True, generator=rng)
        i, j = torch.randint(0, features.shape[-1] - crop + 1, (2,), generator=rng).tolist()
        x = features[index, :, i : i + crop, j : j + crop].float()
        target = targets[index, :, 2 * i : 2 * (i + crop), 2 * j : 2 * (j + crop)].float().div(255.0)
        loss = bins_loss(head(x), target, centres, flat)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return head


def main() -> None:
    study = open_study(__doc__.splitlines()[0])
    checkpoint, colorizer, val = study.checkpoint, study.colorizer, study.val
    net = bins_generator(colorizer, checkpoint)
    own = net.head.conv2d
    assert isinstance(own, nn.Conv2d) and own.kernel_size == (1, 1) and own.bias is None
    began = time.perf_counter()
    torch.manual_seed(0)
    images = _images(study.train)
    features = head_features(net, images)
    shares = hue_shares(image.permute(1, 2, 0).numpy() for image in images)
    centres = net.get_buffer("bin_centres")
    cached = time.perf_counter() - began
    heads: dict[float, nn.Conv2d] = {0.0: own}
    names = {0.0: "the checkpoint's own head"}
    for number, (name, (from_own, balance, steps)) in enumerate(CANDIDATES.items(), start=1):
        weights = hue_balanced_weights(shares, balance)
        heads[float(number)] = train_head(own if from_own else None, features, images, weights, steps, centres)
        names[float(number)] = name
        print(f"trained {name} at {time.perf_counter() - began:.0f} s", flush=True)
    trained = time.perf_counter() - began
    original = {k: v.detach().clone() for k, v in own.state_dict().items()}

    def apply(number: float) -> None:
        state = original if number == 0 else heads[number].state_dict()
        with torch.no_grad():
            own.weight.copy_(state["weight"])

    full = sweep(colorizer, tuple(heads), apply, val)
    chosen = choose(full, base=0.0)
    folds = cross_validation(colorizer, tuple(heads), apply, val, base=0.0, knob="candidate", labels=names)
    seen = sweep(colorizer, tuple(heads), apply, study.train[:SEEN])
    apply(0.0)
    elapsed = time.perf_counter() - began
    lines = [
        "# Re-training only the bins head with hue-balanced sampling (cRT): candidates on the validation split",
        "",
        f"`python benchmarks/head_retrain.py`; checkpoint `{checkpoint.name}`, CPU {platform.machine()}, precision "
        f"{colorizer.precision}, torch {torch.__version__}; features of {len(images)} images ({len(study.train)} "
        f"training photos and their mirror images, {SIZE} x {SIZE}, no hints) cached in {cached:.0f} s, heads "
        f"trained in {trained - cached:.0f} s, {elapsed:.0f} s in all.",
        "",
        f"Candidates: unweighted bins loss, Adam lr {LR:g}, batches of {BATCH} images cropped to {CROP} x {CROP} features; see the script's "
        f"docstring. Validation split ({len(val)} photos, long side 512, as `scgan-eval`); the rule fixed in "
        f"advance: among the candidates with a positive dPSNR, green and blue hue recall no worse than the "
        f"checkpoint's head and warm recall >= {WARM_BAR}, the highest dPSNR at matched colourfulness.",
        "",
        *table(full, chosen, knob="candidate", labels=names),
        "",
        *folds,
        "",
        f"The same heads on the first {SEEN} training photos (their features are the ones the heads were trained on):",
        "",
        *table(seen, knob="candidate", labels=names),
    ]
    emit(lines, study.out)


if __name__ == "__main__":
    main()
