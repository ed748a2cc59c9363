"""The colour pipeline: any image in, a full-resolution colour image out.

Three stages, so that a server can batch the middle one across requests:

* :meth:`Colorizer.prepare` (CPU): orientation, luma at full resolution, a copy
  resized to the working resolution.
* :meth:`Colorizer.predict` (device): one generator forward for a batch.
* :meth:`Colorizer.finish` (CPU): predicted chroma upsampled to full size and
  recombined with the ORIGINAL luma, so no detail of the input is lost; alpha
  carried over. N-channel (e.g. thermal) checkpoints return the network's RGB.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from model.checkpoint import CheckpointInfo, Task, default_task, load_generator
from model.color import GRAY_WEIGHTS, combine_luma_chroma, fit_chroma, rgb_to_chroma, rgb_to_gray
from model.compiled import CompiledForwards, CompiledShape, CompileReport
from model.config import SIZE_MULTIPLE
from model.device import Precision, autocast, resolve_device, resolve_precision
from model.efficientnet_lite import fuse_trunk_batch_norm
from model.encoder_generator import EncoderGenerator
from model.generator import AnyGenerator
from model.hint_propagation import HintPropagation, propagate_hints
from model.hints import Hint, HintError, hint_points, points_to_planes
from model.images import to_planes
from model.layers import fold_spectral_norm, fuse_batch_norm
from model.options import CHROMA_GAIN_MAX, CHROMA_GAIN_MIN, check_chroma_gain

#: Luma weights as a 3 x 1 x 1 tensor, built once (prepare runs per request); read-only.
_GRAY_WEIGHTS_CHW = torch.tensor(GRAY_WEIGHTS, dtype=torch.float32).view(3, 1, 1)


def check_render_size(render_size: int) -> int:
    """Render sizes are positive multiples of 256 (the generator halves its input 8 times)."""
    if isinstance(render_size, bool) or not isinstance(render_size, int) or render_size < SIZE_MULTIPLE:
        raise ValueError(f"render_size must be a positive multiple of {SIZE_MULTIPLE}, got {render_size!r}")
    if render_size % SIZE_MULTIPLE:
        raise ValueError(f"render_size must be a multiple of {SIZE_MULTIPLE}, got {render_size}")
    return render_size


@dataclass(frozen=True)
class PreparedImage:
    """One image ready for the generator: full-resolution luma, alpha, and the model input.

    Only what :meth:`Colorizer.finish` needs is kept (not the decoded colour planes),
    so an image waiting in a queue holds about 4 bytes per input pixel plus its alpha.
    """

    luma: torch.Tensor  # 1 x H x W, float32, CPU
    alpha: Image.Image | None
    model_input: torch.Tensor  # C_in x R x R, float32, CPU
    render_size: int
    hint_points: torch.Tensor | None = None  # K x 4 (working row, column, Cb, Cr); None or K = 0: no hints

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL reports sizes."""
        return self.luma.shape[-1], self.luma.shape[-2]


def _resize(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a C x H x W tensor; antialiased when shrinking."""
    if tuple(t.shape[-2:]) == size:
        return t
    shrinking = size[0] < t.shape[-2] or size[1] < t.shape[-1]
    return F.interpolate(t[None], size=size, mode="bilinear", align_corners=False, antialias=shrinking)[0]


def _to_image(t: torch.Tensor) -> Image.Image:
    """1 or 3 x H x W float in [0, 1] -> an L or RGB image.

    Planes are merged by Pillow rather than transposed to H x W x C by torch, which
    costs about twice as much at full resolution.
    """
    planes = t.mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8).numpy()  # + 0.5, truncated: rounding
    if planes.shape[0] == 1:
        return Image.fromarray(planes[0], "L")
    return Image.merge("RGB", [Image.fromarray(plane, "L") for plane in planes])


def _to_bytes(t: torch.Tensor, offset: float = 0.0) -> np.ndarray:
    """A float plane in [0, 1] (``offset`` added after scaling to 0..255) -> uint8, rounded to nearest."""
    return t.mul(255.0).add_(offset + 0.5).clamp_(0.0, 255.0).to(torch.uint8).numpy()


def _block_mean(y: np.ndarray) -> torch.Tensor:
    """Mean luma (1 x ceil(H/2) x ceil(W/2), float in [0, 1]) of each 2 x 2 block of uint8 ``y``, edges replicated.

    Strided uint8 sums: many times cheaper than pooling the float luma.
    """
    height, width = y.shape
    if height % 2 or width % 2:
        y = np.pad(y, ((0, height % 2), (0, width % 2)), mode="edge")
    rows = y[0::2].astype(np.uint16) + y[1::2]
    return torch.from_numpy(rows[:, 0::2] + rows[:, 1::2])[None].float().div_(4.0 * 255.0)


@dataclass(frozen=True)
class YCbCrPlanes:
    """A colour result as a 4:2:0 JPEG stores it: luma at full resolution, chroma at half (JFIF, full range).

    Writing these planes skips the RGB image, and the encoder's RGB -> YCbCr
    conversion and chroma downsampling, altogether; the luma is the input's own.
    """

    y: np.ndarray  # H x W, uint8
    cb: np.ndarray  # ceil(H/2) x ceil(W/2), uint8, 128 = no colour
    cr: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image, as PIL reports sizes."""
        return self.y.shape[1], self.y.shape[0]

    def to_image(self) -> Image.Image:
        """A full-size YCbCr image whose chroma is constant over each 2 x 2 block.

        A 4:2:0 encoder averages each block back to exactly the half-resolution value.
        """
        size = self.size
        cb, cr = (Image.fromarray(p, "L").resize(size, Image.Resampling.NEAREST) for p in (self.cb, self.cr))
        return Image.merge("YCbCr", [Image.fromarray(self.y, "L"), cb, cr])


class Colorizer:
    """Colorizes PIL images with a loaded generator, in batches, on a chosen device and precision."""

    def __init__(
        self,
        generator: AnyGenerator,
        *,
        device: str | torch.device | None = None,
        precision: Precision | str = "auto",
        render_size: int | None = None,
        channels_last: bool | None = None,
        batch_size: int = 8,
    ) -> None:
        self.device = resolve_device(device)
        self.precision: Precision = resolve_precision(precision, self.device)
        info: CheckpointInfo | None = getattr(generator, "checkpoint_info", None)
        self.checkpoint_info = info
        self.task = info.task if info else default_task(generator.config)
        if render_size is None:
            render_size = info.working_resolution if info else SIZE_MULTIPLE
        self.render_size = check_render_size(render_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        if self.task is Task.GRAY_TO_RGB and generator.config.in_channels != 1:
            raise ValueError("a gray->rgb task needs a generator with in_channels=1")
        if self.task is Task.NCHANNEL_TO_RGB and generator.config.in_channels not in (1, 3):
            raise ValueError("images can feed generators of 1 or 3 input channels only")
        self.channels_last = True if channels_last is None else channels_last
        # A private copy, so that a network still being trained is never touched: spectral norm
        # folded, BatchNorm fused into the convolutions (benchmarks/model_forward.py).
        inference_net = copy.deepcopy(generator).eval()
        self.generator = fuse_batch_norm(fold_spectral_norm(inference_net))
        if isinstance(self.generator, EncoderGenerator):
            # Its trunk's BatchNorms too (SCGAN's checkpoints, Lite0 global network included, keep their numerics).
            fuse_trunk_batch_norm(self.generator.trunk)
        self.generator = self.generator.to(self.device)
        if self.channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
        self._forwards = CompiledForwards(self.generator, generator.config.input_channels)
        #: How hints the network left unfollowed are carried to their regions (None: the network's answer alone).
        self.hint_propagation: HintPropagation | None = HintPropagation()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], **kwargs: Any) -> Colorizer:
        """Load ``path`` and wrap it; ``kwargs`` are :class:`Colorizer`'s own (``device`` is used for loading too)."""
        return cls(load_generator(path, device=kwargs.get("device")), **kwargs)

    @property
    def in_channels(self) -> int:
        """Planes of the image the generator colorizes (1: gray)."""
        return self.generator.config.in_channels

    @property
    def input_channels(self) -> int:
        """Planes of a prepared model input: the image's, plus the hint planes of a hint-taking generator."""
        return self.generator.config.input_channels

    @property
    def has_saliency(self) -> bool:
        return self.generator.has_saliency

    @property
    def takes_hints(self) -> bool:
        """Whether the generator reads colour hints (:mod:`model.hints`)."""
        return self.generator.config.hints

    # -- stage 1: CPU ------------------------------------------------------------
    def prepare(
        self, image: Image.Image, render_size: int | None = None, hints: Sequence[Hint] | None = None
    ) -> PreparedImage:
        """Decode and pre-process one image (no device work).

        ``hints`` are points of the image as displayed (after EXIF orientation); a hint-taking generator
        gets their planes (zeros for none), any other refuses them with :class:`~model.hints.HintError`.
        """
        size = check_render_size(self.render_size if render_size is None else render_size)
        planes = to_planes(image)
        pixels = torch.from_numpy(np.ascontiguousarray(planes.pixels)).permute(2, 0, 1)  # C x H x W
        if pixels.shape[0] == 3:
            luma = (pixels * _GRAY_WEIGHTS_CHW).sum(0, keepdim=True)
        else:
            luma = pixels
        source = luma if self.in_channels == 1 else (pixels if pixels.shape[0] == 3 else pixels.expand(3, -1, -1))
        model_input = _resize(source, (size, size))
        if hints and not self.takes_hints:
            raise HintError("this checkpoint takes no colour hints")
        points = None
        if self.takes_hints:
            height, width = luma.shape[-2:]
            points = hint_points(hints or (), width, height, size)
            model_input = torch.cat((model_input, points_to_planes(points, size)))
        model_input = model_input.contiguous()
        return PreparedImage(
            luma=luma.contiguous(), alpha=planes.alpha, model_input=model_input, render_size=size, hint_points=points
        )

    # -- stage 2: device ---------------------------------------------------------
    @contextlib.contextmanager
    def _forward_context(self) -> Iterator[None]:
        with torch.inference_mode(), autocast(self.device, self.precision):
            yield

    def compile(
        self,
        batch_sizes: Iterable[int],
        render_size: int | None = None,
        *,
        saliency: bool = False,
        cache_dir: Path | None = None,
    ) -> CompileReport:
        """Compile the forward for these batch sizes at one render size (default: this one's), or load it.

        A shape found in ``cache_dir`` (:mod:`model.compile_cache`) loads in under a second; one that is
        not takes tens of seconds to a minute to compile and is saved there (None: nothing is kept). Afterwards :meth:`predict` pads a batch up to the
        nearest compiled size and runs that graph; other shapes, and any shape whose compile
        fails (reported, logged), run eagerly. See :mod:`model.compiled`.
        """
        size = check_render_size(self.render_size if render_size is None else render_size)
        if self.channels_last is False:
            raise ValueError("compiled forwards are built for channels_last inputs; construct with channels_last=True")
        return self._forwards.compile(
            batch_sizes,
            size,
            saliency=saliency,
            device=self.device,
            precision=self.precision,
            context=lambda: autocast(self.device, self.precision),
            cache_dir=cache_dir,
        )

    @property
    def compiled_shapes(self) -> list[CompiledShape]:
        """The input shapes that run a compiled graph (empty unless :meth:`compile` was called)."""
        return self._forwards.shapes

    def predict(self, batch: torch.Tensor, *, saliency: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """B x C x R x R -> (RGB in [0, 1], saliency or None), float32 on the CPU."""
        x = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._forward_context():
            rgb, sal = self._forwards.run(x, saliency)
            rgb = rgb.float().clamp(0.0, 1.0).cpu()
            sal = sal.float().cpu() if sal is not None else None
        return rgb, sal

    # -- stage 3: CPU ------------------------------------------------------------
    def _chroma(self, prepared: PreparedImage, rgb: torch.Tensor) -> torch.Tensor:
        """The predicted 2 x R x R chroma, with the image's hints carried to their regions (:mod:`model.hint_propagation`)."""
        chroma = rgb_to_chroma(rgb.float())
        points = prepared.hint_points
        if points is None or not len(points) or self.hint_propagation is None:
            return chroma
        inputs = prepared.model_input
        luma = inputs[0] if self.in_channels == 1 else rgb_to_gray(inputs[:3])[0]
        return propagate_hints(chroma, luma, points, self.hint_propagation)

    def finish(self, prepared: PreparedImage, rgb: torch.Tensor, chroma_gain: float = 1.0) -> Image.Image:
        """Full-resolution colour image from one predicted 3 x R x R RGB.

        ``chroma_gain`` scales the predicted chroma (0: the gray input back, 2: twice as vivid); pixels
        that would leave the RGB cube are desaturated just enough to fit, never clipped.
        """
        gain = check_chroma_gain(chroma_gain)
        width, height = prepared.size
        if self.task is Task.GRAY_TO_RGB:
            chroma = _resize(self._chroma(prepared, rgb), (height, width))
            out = combine_luma_chroma(prepared.luma, chroma.mul_(gain) if gain != 1.0 else chroma)
        else:
            out = _resize(rgb.float(), (height, width)).clamp(0.0, 1.0)
            if gain != 1.0:
                out = combine_luma_chroma(rgb_to_gray(out), rgb_to_chroma(out).mul_(gain))
        result = _to_image(out)
        if prepared.alpha is not None:
            result.putalpha(prepared.alpha)
        return result

    def can_finish_ycbcr(self, prepared: PreparedImage) -> bool:
        """Whether :meth:`finish_ycbcr` applies: a gray -> RGB model and an image without alpha."""
        return self.task is Task.GRAY_TO_RGB and prepared.alpha is None

    def finish_ycbcr(self, prepared: PreparedImage, rgb: torch.Tensor, chroma_gain: float = 1.0) -> YCbCrPlanes:
        """:meth:`finish` for a 4:2:0 JPEG answer: the input's luma and the chroma at half resolution.

        The predicted chroma is resized straight to half the image's size (a 4:2:0
        JPEG keeps no more) and fitted to the RGB cube at each 2 x 2 block's mean
        luma, as the encoder's average of per-pixel fitted chroma would be; the
        full-resolution RGB image is never built.
        """
        if not self.can_finish_ycbcr(prepared):
            raise ValueError("finish_ycbcr needs a gray->rgb model and an image without alpha")
        gain = check_chroma_gain(chroma_gain)
        width, height = prepared.size
        chroma = _resize(self._chroma(prepared, rgb), ((height + 1) // 2, (width + 1) // 2))
        if gain != 1.0:
            chroma.mul_(gain)
        y = _to_bytes(prepared.luma)[0]
        cb, cr = _to_bytes(fit_chroma(chroma, _block_mean(y)), 128.0)
        return YCbCrPlanes(y, cb, cr)

    def finish_saliency(self, prepared: PreparedImage, saliency: torch.Tensor) -> Image.Image:
        """Grayscale saliency map of the input's size from one predicted 1 x R x R map."""
        width, height = prepared.size
        return _to_image(_resize(saliency.float(), (height, width)))

    # -- conveniences ----------------------------------------------------------------
    def colorize_with_saliency(
        self,
        images: Sequence[Image.Image],
        render_size: int | None = None,
        *,
        saliency: bool = False,
        chroma_gain: float = 1.0,
        hints: Sequence[Sequence[Hint]] | None = None,
    ) -> list[tuple[Image.Image, Image.Image | None]]:
        """(colour image, saliency map or None) per image, ``batch_size`` at a time, one forward per batch.

        ``hints``, when given, holds one list of colour hints per image.
        """
        if saliency and not self.has_saliency:
            raise ValueError("the loaded generator has no saliency branch")
        check_chroma_gain(chroma_gain)
        if hints is not None and len(hints) != len(images):
            raise ValueError(f"{len(hints)} hint lists for {len(images)} images")
        prepared = [self.prepare(img, render_size, hints[i] if hints else None) for i, img in enumerate(images)]
        results: list[tuple[Image.Image, Image.Image | None]] = []
        for start in range(0, len(prepared), self.batch_size):
            chunk = prepared[start : start + self.batch_size]
            rgb, sal = self.predict(torch.stack([p.model_input for p in chunk]), saliency=saliency)
            for i, p in enumerate(chunk):
                color = self.finish(p, rgb[i], chroma_gain)
                results.append((color, self.finish_saliency(p, sal[i]) if sal is not None else None))
        return results

    def colorize(
        self, images: Sequence[Image.Image], render_size: int | None = None, *, chroma_gain: float = 1.0
    ) -> list[Image.Image]:
        """Colorize several images, ``batch_size`` at a time."""
        return [color for color, _ in self.colorize_with_saliency(images, render_size, chroma_gain=chroma_gain)]

    def colorize_one(
        self, image: Image.Image, render_size: int | None = None, *, chroma_gain: float = 1.0
    ) -> Image.Image:
        return self.colorize([image], render_size, chroma_gain=chroma_gain)[0]

    def saliency(self, images: Sequence[Image.Image], render_size: int | None = None) -> list[Image.Image]:
        """Predicted saliency maps, one per image, at each image's size."""
        pairs = self.colorize_with_saliency(images, render_size, saliency=True)
        return [sal for _, sal in pairs if sal is not None]


__all__ = [
    "CHROMA_GAIN_MAX",
    "CHROMA_GAIN_MIN",
    "Colorizer",
    "PreparedImage",
    "YCbCrPlanes",
    "check_chroma_gain",
    "check_render_size",
]
