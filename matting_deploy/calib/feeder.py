"""Calibration inputs for onnxruntime.quantization, one model input dict per calibration image.

Each image goes through the model's own preprocessing at the bundle's input size. Recurrent
models (RVM) first run ``warmup_frames - 1`` frames through the FP32 model (the same image for
still images, the preceding frames for a clip), so the frame that is calibrated carries the real
recurrent state the FP32 model produced, not zeros.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from ..data.bgm import BgmInputs
from ..data.preprocess import preprocess_for
from ..data.sources import CalibItem, CalibSource, FrameLoader, warmup_items
from ..errors import MattingDeployError

# per item: the variants calibrated ("plain": the image; "mirror": its mirror image; "jitter": a
# brightness- and scale-jittered copy, drawn per image from the image's name)
AUGMENTS = {"none": ("plain",), "flip": ("plain", "mirror"), "jitter": ("plain", "jitter"),
            "flip+jitter": ("plain", "mirror", "jitter")}
BRIGHTNESS = (0.7, 1.3)  # jitter: pixel values times a factor drawn from this range (clipped to 0..1)
ZOOM = (0.75, 1.0)  # jitter: a crop of this fraction of each side, anywhere in the image, resized back

try:  # the base class only adds iteration helpers; keep this module importable without ORT
    from onnxruntime.quantization import CalibrationDataReader as _Reader
except ImportError:  # pragma: no cover
    _Reader = object


def varied(image: np.ndarray, variant: str, name: str) -> np.ndarray:
    """``image`` (HxWxC, 0..1) as ``variant`` sees it. "jitter" draws its brightness factor and crop
    from ``name`` (stable across runs and for every frame warmed up for the same item)."""
    if variant == "mirror":
        return np.ascontiguousarray(image[:, ::-1])
    if variant != "jitter":
        return image
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))
    gain, zoom = rng.uniform(*BRIGHTNESS), rng.uniform(*ZOOM)
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * zoom)), max(1, round(w * zoom))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = image[y : y + ch, x : x + cw]
    return np.clip(crop * np.asarray(gain, crop.dtype), 0, 1).astype(image.dtype, copy=False)


class CalibrationFeeder(_Reader):
    """A ``CalibrationDataReader`` over calibration items, served in chunks.

    ``get_next()`` returns ``None`` at the end of each chunk (histogram calibrators keep every
    sample of a ``collect_data`` call in memory); call :meth:`next_chunk` to continue and check
    :attr:`done`. ``runner`` is a runner on the FP32 model (an
    :class:`~matting_deploy.runtimes.onnxruntime_runner.OrtRunner`): its
    :meth:`~matting_deploy.runtimes.base.Runner.model_inputs` gives the exact input dict, states included.
    """

    def __init__(
        self,
        runner,
        source: CalibSource,
        items: list[CalibItem],
        model: str,
        input_hw: tuple[int, int],
        warmup_frames: int = 4,
        chunk: int = 0,
        on_item: Callable[[CalibItem], None] | None = None,
        loader: FrameLoader | None = None,
        extras: BgmInputs | None = None,
        augment: str = "none",
    ):
        if warmup_frames < 1:
            raise MattingDeployError(f"--warmup-frames must be at least 1, got {warmup_frames}")
        self.runner = runner
        self.source = source
        # Clip frames are decoded in one pass per batch, so visit them in order.
        self.items = sorted(items, key=lambda it: it.index) if source.kind == "video" else list(items)
        self.preprocess = preprocess_for(model)
        self.input_hw = input_hw
        self.warmup_frames = warmup_frames if runner.recurrent else 1
        self.chunk = chunk
        self.on_item = on_item
        self.loader = loader or FrameLoader(source)
        self.extras = extras  # BGM: bgr and seg of each image
        if augment not in AUGMENTS:
            raise MattingDeployError(f"--augment: unknown '{augment}' (choose {', '.join(AUGMENTS)})")
        self.variants = AUGMENTS[augment]
        if extras is not None and "jitter" in self.variants:
            raise MattingDeployError("--augment: jitter crops the image, which would part it from BGM's "
                                     "background; use none or flip")
        self._pending: list[dict[str, np.ndarray]] = []
        self.skipped: list[str] = []
        self.used: list[CalibItem] = []
        self._pos = 0
        self._in_chunk = 0

    @property
    def done(self) -> bool:
        return self._pos >= len(self.items)

    def next_chunk(self) -> None:
        self._in_chunk = 0

    def rewind(self) -> None:
        self._pos = 0
        self._in_chunk = 0
        self.used = []
        self.skipped = []
        self._pending = []

    def _src(self, item: CalibItem, variant: str = "plain",
             key: CalibItem | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        key = key or item
        image = varied(self.loader.load(item), variant,
                       f"{key.path.name}:{key.index}" if self.source.kind == "video" else key.path.name)
        src, _ = self.preprocess(image, *self.input_hw)
        return src, (self.extras.extra(item.path, image) if self.extras else {})

    def feed_for(self, item: CalibItem, variant: str = "plain") -> dict[str, np.ndarray]:
        """The input dict of ``item``'s frame after FP32 warm-up (raises on unreadable files);
        ``variant``: one of :data:`AUGMENTS`' variants (warm-up frames varied alike)."""
        self.runner.reset()
        src, extra = self._src(item, variant)
        for prev in warmup_items(self.source, item, self.warmup_frames):
            inputs = (src, extra) if prev is item else self._src(prev, variant, key=item)
            self.runner.run(inputs[0], **inputs[1])
        return {k: np.array(v, copy=True) for k, v in self.runner.model_inputs(src, **extra).items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.chunk and self._in_chunk >= self.chunk:
            return None
        if self._pending:
            self._in_chunk += 1
            return self._pending.pop(0)
        while self._pos < len(self.items):
            item = self.items[self._pos]
            self._pos += 1
            try:
                if self.source.kind == "video" and not self.loader.has(item):
                    self._prefetch_video(self._pos - 1)
                feed = self.feed_for(item)
                self._pending = [self.feed_for(item, v) for v in self.variants[1:]]
            except MattingDeployError as e:
                self.skipped.append(str(e))
                feed = None
            if self.on_item:
                self.on_item(item)
            if feed is not None:
                self.used.append(item)
                self._in_chunk += 1
                return feed
        return None

    def _prefetch_video(self, start: int, batch: int = 8) -> None:
        need = []
        for it in self.items[start : start + batch]:
            need += [it, *warmup_items(self.source, it, self.warmup_frames)]
        self.loader.forget(set())
        self.loader.prefetch(need)

    def all_feeds(self) -> list[dict[str, np.ndarray]]:
        """Every readable item's input dict (for drift measurements on a small held-out set)."""
        self.rewind()
        chunk, self.chunk = self.chunk, 0
        feeds = []
        while (feed := self.get_next()) is not None:
            feeds.append(feed)
        self.chunk = chunk
        return feeds
