"""Datasets for training: colour photos (gray in, RGB + saliency out), paired N-channel data, and
classification crops for pre-training the global feature network.

Augmentation randomness comes from a per-sample seed chosen by :class:`EpochSampler`,
so a resumed run sees exactly the crops an uninterrupted one would have seen.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Sampler

from model.color import rgb_to_gray
from model.images import fit_within, is_image_file, load_rgb
from model.storage import atomic_write
from model.wording import count
from training.film import film_gray
from training.hint_sim import HintSimulation, simulate_hint_planes
from training.metrics import colorfulness
from training.saliency import spectral_residual

log = logging.getLogger("scgan.train.data")


class KeyedDataset(Dataset[dict[str, torch.Tensor]]):
    """A map-style dataset of known length whose items are keyed by ``(index, seed)`` (see :class:`EpochSampler`)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class DataError(ValueError):
    """A dataset has no usable images or is misconfigured."""


def list_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    return sorted(p for p in root.rglob("*") if is_image_file(p))


def is_validation(relative: str, fraction: float) -> bool:
    """Deterministic, order-independent hold-out: a hash of the relative path decides."""
    digest = int(hashlib.sha1(relative.encode("utf-8")).hexdigest()[:8], 16)
    return digest / 2**32 < fraction


def split_paths(root: str | Path, fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, validation) image paths under ``root``; ``fraction`` of them held out by path hash."""
    root = Path(root)
    paths = list_images(root)
    val = [p for p in paths if is_validation(p.relative_to(root).as_posix(), fraction)]
    held = set(val)
    return [p for p in paths if p not in held], val


def _load_rgb(path: Path, max_side: int) -> torch.Tensor | None:
    """uint8 3 x H x W from :func:`model.images.load_rgb`; None (with a warning) if unusable or gray."""
    try:
        rgb = load_rgb(path, max_side)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        log.warning("skipping unreadable image %s: %s", path, exc)
        return None
    arr = np.asarray(rgb, dtype=np.uint8)
    spread = arr.max(axis=2).astype(np.int16) - arr.min(axis=2).astype(np.int16)
    if np.percentile(spread, 99) <= 3:
        log.warning("skipping grayscale-only image %s (nothing to learn colour from)", path)
        return None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


@dataclass(frozen=True)
class CropSpec:
    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float]
    hflip: bool


def _crop_box(h: int, w: int, spec: CropSpec, rng: torch.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, height, width), drawn from ``rng``."""
    area = h * w
    log_ratio = (math.log(spec.ratio[0]), math.log(spec.ratio[1]))
    for _ in range(10):
        u = torch.rand(3, generator=rng).tolist()
        target = area * (spec.scale[0] + u[0] * (spec.scale[1] - spec.scale[0]))
        aspect = math.exp(log_ratio[0] + u[1] * (log_ratio[1] - log_ratio[0]))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=rng))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=rng))
            return top, left, ch, cw
    return 0, 0, h, w  # fall back to the whole image (squashed), as at inference


def random_resized_crop(tensors: Sequence[torch.Tensor], spec: CropSpec, seed: int) -> list[torch.Tensor]:
    """Crop the same box out of each C x H x W tensor, resize to ``spec.size`` squared, maybe flip."""
    rng = torch.Generator().manual_seed(seed)
    h, w = tensors[0].shape[-2:]
    top, left, ch, cw = _crop_box(h, w, spec, rng)
    flip = spec.hflip and bool(torch.rand(1, generator=rng) < 0.5)
    out = []
    for t in tensors:
        crop = t[:, top : top + ch, left : left + cw].float()
        crop = F.interpolate(
            crop[None], size=(spec.size, spec.size), mode="bilinear", align_corners=False, antialias=True
        )[0]
        out.append(crop.flip(-1) if flip else crop)
    return out


class SaliencySource:
    """Saliency maps from a parallel folder, or computed by spectral residual and cached as PNG."""

    def __init__(self, root: Path, saliency_dir: str, cache_dir: Path) -> None:
        self.root = root
        self.saliency_dir = Path(saliency_dir) if saliency_dir else None
        self.cache_dir = cache_dir

    def get(self, path: Path, rgb: torch.Tensor) -> torch.Tensor:
        """uint8 1 x H x W map matching ``rgb``'s size."""
        rel = path.relative_to(self.root)
        h, w = rgb.shape[-2:]
        if self.saliency_dir is not None:
            for candidate in (self.saliency_dir / rel, (self.saliency_dir / rel).with_suffix(".png")):
                if candidate.is_file():
                    with Image.open(candidate) as img:
                        sal_img = img.convert("L").resize((w, h), Image.Resampling.BILINEAR)
                    return torch.from_numpy(np.asarray(sal_img, dtype=np.uint8).copy())[None]
            raise DataError(f"no saliency map for {rel} in {self.saliency_dir}")
        cached = self.cache_dir / rel.parent / f"{rel.stem}.{w}x{h}.png"
        if cached.is_file():
            with Image.open(cached) as img:
                return torch.from_numpy(np.asarray(img.convert("L"), dtype=np.uint8).copy())[None]
        sal = spectral_residual(rgb_to_gray(rgb.float() / 255.0))
        sal_u8 = (sal * 255.0).round().to(torch.uint8)
        with atomic_write(cached) as tmp:  # several ranks may fill the same cache at once
            Image.fromarray(sal_u8[0].numpy(), "L").save(tmp, format="PNG")
        return sal_u8


class ColorPhotoDataset(KeyedDataset):
    """Colour photos held in memory; items are ``{"input": gray, "rgb": target, "saliency": map}``.

    With ``hints``, items also hold ``"hints"``: simulated colour-hint planes (:mod:`training.hint_sim`);
    ``film_share`` of the items get an old-film gray input (:mod:`training.film`). Both are drawn from the
    item's seed, so a resumed run sees the same crops.
    """

    def __init__(
        self,
        root: str | Path,
        paths: Sequence[Path],
        crop: CropSpec,
        *,
        max_side: int = 0,
        saliency_dir: str = "",
        cache_dir: str | Path = "saliency-cache",
        min_colorfulness: float = 0.0,
        hints: HintSimulation | None = None,
        film_share: float = 0.0,
    ) -> None:
        self.root = Path(root)
        self.crop = crop
        self.hints = hints
        self.film_share = film_share
        source = SaliencySource(self.root, saliency_dir, Path(cache_dir))
        self.images: list[torch.Tensor] = []
        self.saliency: list[torch.Tensor] = []
        self.paths: list[Path] = []
        #: Photos left out for a colourfulness under ``min_colorfulness`` (near-gray: they teach sepia).
        self.dropped_low_colorfulness: list[Path] = []
        for path in paths:
            rgb = _load_rgb(path, max_side)
            if rgb is None:
                continue
            if min_colorfulness > 0 and colorfulness(rgb.permute(1, 2, 0).numpy()) < min_colorfulness:
                self.dropped_low_colorfulness.append(path)
                continue
            self.images.append(rgb)
            self.saliency.append(source.get(path, rgb))
            self.paths.append(path)
        if not self.images:
            raise DataError(f"no usable colour images among {count(len(paths), 'file')} under {self.root}")
        if self.dropped_low_colorfulness:
            log.info(
                "left out %d of %s with colourfulness under %g",
                len(self.dropped_low_colorfulness),
                count(len(paths), "photo"),
                min_colorfulness,
            )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        rgb, sal = random_resized_crop([self.images[index], self.saliency[index]], self.crop, seed)
        rgb = rgb / 255.0
        item = {"input": rgb_to_gray(rgb), "rgb": rgb, "saliency": sal / 255.0}
        if self.hints is not None or self.film_share > 0:
            rng = torch.Generator().manual_seed(seed * 7919 + 13)
            if self.film_share > 0 and float(torch.rand(1, generator=rng)) < self.film_share:
                item["input"] = film_gray(rgb, rng)
            if self.hints is not None:
                item["hints"] = simulate_hint_planes(rgb, self.hints, rng)
        return item


class PairedDataset(KeyedDataset):
    """N-channel inputs (e.g. thermal infrared) matched to RGB targets by relative path."""

    def __init__(
        self,
        input_dir: str | Path,
        target_dir: str | Path,
        in_channels: int,
        crop: CropSpec,
        *,
        max_side: int = 0,
        cache_dir: str | Path = "saliency-cache",
    ) -> None:
        if in_channels not in (1, 3):
            raise DataError("paired mode reads image files, so in_channels must be 1 or 3")
        self.crop = crop
        input_root, target_root = Path(input_dir), Path(target_dir)
        source = SaliencySource(target_root, "", Path(cache_dir))
        self.inputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.saliency: list[torch.Tensor] = []
        mode = "L" if in_channels == 1 else "RGB"
        for target_path in list_images(target_root):
            rel = target_path.relative_to(target_root)
            matches = [p for p in (input_root / rel, *(input_root / rel).parent.glob(rel.stem + ".*")) if p.is_file()]
            if not matches:
                log.warning("skipping %s: no input file for it under %s", rel, input_root)
                continue
            try:
                with Image.open(target_path) as t_img, Image.open(matches[0]) as i_img:
                    target = t_img.convert("RGB")
                    inp = i_img.convert(mode).resize(target.size, Image.Resampling.BILINEAR)
            except (OSError, UnidentifiedImageError, ValueError) as exc:
                log.warning("skipping unreadable pair %s: %s", rel, exc)
                continue
            target = fit_within(target, max_side)
            inp = fit_within(inp, max_side)
            t = torch.from_numpy(np.asarray(target, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
            i = torch.from_numpy(np.asarray(inp, dtype=np.uint8).copy())
            i = (i[None] if i.ndim == 2 else i.permute(2, 0, 1)).contiguous()
            self.targets.append(t)
            self.inputs.append(i)
            self.saliency.append(source.get(target_path, t))
        if not self.targets:
            raise DataError(f"no usable input/target pairs under {input_root} and {target_root}")

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        inp, rgb, sal = random_resized_crop(
            [self.inputs[index], self.targets[index], self.saliency[index]], self.crop, seed
        )
        return {"input": inp / 255.0, "rgb": rgb / 255.0, "saliency": sal / 255.0}


class ClassificationDataset(KeyedDataset):
    """Gray crops with labels: class-per-folder, or the self-supervised rotation task (0/90/180/270 degrees)."""

    def __init__(
        self,
        root: str | Path,
        crop: CropSpec,
        task: str,
        *,
        max_side: int = 0,
        paths: Sequence[Path] | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.crop = crop
        self.task = task
        paths = list(paths) if paths is not None else list_images(self.root)
        if task == "classes":
            self.classes = (
                list(classes)
                if classes is not None
                else sorted(
                    {p.relative_to(self.root).parts[0] for p in paths if len(p.relative_to(self.root).parts) > 1}
                )
            )
            if len(self.classes) < 2:
                raise DataError(f"class-per-folder data under {self.root} needs at least 2 class folders")
        elif task == "rotation":
            self.classes = ["0", "90", "180", "270"]
        else:
            raise DataError(f"unknown pre-training task {task!r}")
        index = {c: i for i, c in enumerate(self.classes)}
        self.images: list[torch.Tensor] = []
        self.labels: list[int] = []
        for path in paths:
            parts = path.relative_to(self.root).parts
            if task == "classes" and (len(parts) < 2 or parts[0] not in index):
                continue
            rgb = _load_rgb(path, max_side)
            if rgb is None:
                continue
            self.images.append(rgb)
            self.labels.append(index[parts[0]] if task == "classes" else 0)
        if not self.images:
            raise DataError(f"no usable images for pre-training under {self.root}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        (rgb,) = random_resized_crop([self.images[index]], self.crop, seed)
        gray = rgb_to_gray(rgb / 255.0)
        label = self.labels[index]
        if self.task == "rotation":
            label = int(torch.randint(0, 4, (1,), generator=torch.Generator().manual_seed(seed + 1)))
            gray = torch.rot90(gray, label, dims=(-2, -1))
        return {"input": gray, "label": torch.tensor(label)}


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled indices for one epoch and rank, each paired with an augmentation seed.

    With ``weights`` (one per item), an epoch is as many draws with replacement in proportion to them.

    The order depends only on (seed, epoch), so every rank agrees and a resumed run
    can skip exactly the samples it already consumed (``start``).
    """

    def __init__(
        self, length: int, *, seed: int, rank: int = 0, world_size: int = 1, weights: Sequence[float] | None = None
    ) -> None:
        if weights is not None and (len(weights) != length or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"weights need {length} non-negative values with a positive sum")
        self.length = length
        self.weights = torch.as_tensor(weights, dtype=torch.float64) if weights is not None else None
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def per_rank(self) -> int:
        return math.ceil(self.length / self.world_size)

    def __len__(self) -> int:
        return max(0, self.per_rank() - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.length, generator=gen).tolist()
        else:  # an epoch of as many draws, with replacement, in proportion to the weights
            order = torch.multinomial(self.weights, self.length, replacement=True, generator=gen).tolist()
        total = self.per_rank() * self.world_size
        order = (order * (total // len(order) + 1))[:total]  # pad so every rank gets as many
        mine = order[self.rank : total : self.world_size]
        for pos in range(self.start, len(mine)):
            yield mine[pos], (self.seed * 1_000_003 + self.epoch) * 1_000_003 + pos * self.world_size + self.rank


__all__ = [
    "ClassificationDataset",
    "ColorPhotoDataset",
    "CropSpec",
    "DataError",
    "EpochSampler",
    "PairedDataset",
    "is_validation",
    "list_images",
    "random_resized_crop",
    "split_paths",
]
