"""Background Matting v1's extra inputs: the clean plate ``bgr`` and the soft person mask ``seg``.

Data layout (stills, PPM-100 plus two folders; clip folders alike, beside ``frames/``)::

    image/NAME.*   the frame            matte/NAME.*  ground truth (validation)
    back/NAME.*    the clean plate, the size of the image (required)
    seg/NAME.*     a person mask, 8-bit (optional; else ``--seg-bundle`` makes it)

A mask made by a segmentation model (``--seg-bundle``: one of our RVM or MODNet bundles) goes
through the official test script's processing (:func:`official_seg`) at the image's resolution;
plate and mask are then brought to the model input with the image's own geometry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import MattingDeployError
from .imaging import IMAGE_EXTS, load_image, load_matte, resize_plane
from .preprocess import to_model_input

PLATES, MASKS = "back", "seg"

# The official test script's mask processing (cv2 there; scipy.ndimage here, same results):
# threshold 0.2 -> 1, erode 10x with the 3x3 ellipse, dilate 5x with the 5x5 ellipse,
# GaussianBlur 31x31 with sigma 0 (OpenCV: 0.3 * ((31 - 1) * 0.5 - 1) + 0.8 = 5.0), mirror borders.
THRESHOLD = 0.2
ERODE_KERNEL = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)  # cv2 MORPH_ELLIPSE (3, 3)
DILATE_KERNEL = np.array([[0, 0, 1, 0, 0]] + [[1] * 5] * 3 + [[0, 0, 1, 0, 0]], bool)  # (5, 5)
ERODE_TIMES, DILATE_TIMES, SIGMA = 10, 5, 5.0

MaskFn = Callable[[np.ndarray], np.ndarray]  # RGB (H, W, 3) -> alpha (H, W) in [0, 1]


def official_seg(mask: np.ndarray) -> np.ndarray:
    """A segmentation model's soft mask (H, W) in [0, 1] -> BGM's ``seg`` the official way."""
    from scipy import ndimage

    m = np.asarray(mask, np.float32).copy()
    m[m > THRESHOLD] = 1.0
    for _ in range(ERODE_TIMES):
        m = ndimage.grey_erosion(m, footprint=ERODE_KERNEL, mode="nearest")
    for _ in range(DILATE_TIMES):
        m = ndimage.grey_dilation(m, footprint=DILATE_KERNEL, mode="nearest")
    m = ndimage.gaussian_filter(m, sigma=SIGMA, truncate=3.0, mode="mirror")
    # The official uint8 step truncates; the epsilon absorbs the blur's float rounding (a flat
    # region of ones stays 255, as with OpenCV's exactly normalised kernel).
    return np.floor(np.clip(m, 0, 1) * 255 + 1e-3) / 255


def _find(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS:
        for path in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if path.is_file():
                return path
    return None


def plate_folder(image: Path) -> Path:
    """``back/`` beside the folder holding ``image`` (``image/`` or a clip's ``frames/``)."""
    return image.parent.parent / PLATES


def require_plates(images: list[Path]) -> None:
    """One-line error naming the ``back/`` folder when a BGM data set lacks it."""
    for folder in sorted({plate_folder(p) for p in images}):
        if not folder.is_dir():
            raise MattingDeployError(
                f"{folder}: missing (a Background Matting bundle needs the clean plates "
                f"{PLATES}/NAME.* beside {images[0].parent.name}/)")


def side_fingerprint(images: list[Path]) -> str:
    """sha256 over the plates and stored masks of ``images`` (names and bytes; absent ones too)."""
    h = hashlib.sha256()
    for image in sorted(images):
        for folder in (plate_folder(image), image.parent.parent / MASKS):
            found = _find(folder, image.stem)
            h.update(f"{folder.name}/{found.name if found else '-'}\0".encode())
            if found:
                h.update(found.read_bytes())
    return h.hexdigest()


class BgmInputs:
    """``bgr`` and ``seg`` at the model input for each image, from ``back/`` and ``seg/`` files or
    a mask function (``--seg-bundle``) processed by :func:`official_seg`."""

    def __init__(self, height: int, width: int, resize: str = "stretch", mask_fn: MaskFn | None = None,
                 plate: np.ndarray | None = None):
        self.hw, self.resize, self.mask_fn, self.plate = (height, width), resize, mask_fn, plate

    def plate_for(self, image_path: Path | None, image: np.ndarray) -> np.ndarray:
        plate = self.plate
        if plate is None:
            if image_path is None:
                raise MattingDeployError("bgr: no clean plate given (--bgr)")
            found = _find(plate_folder(image_path), image_path.stem)
            if found is None:
                raise MattingDeployError(f"{plate_folder(image_path) / image_path.stem}.*: no clean "
                                         f"plate for {image_path.name}")
            plate, image_path = load_image(found), found
        if plate.shape[:2] != image.shape[:2]:
            raise MattingDeployError(f"{image_path or 'bgr'}: plate is {plate.shape[1]}x{plate.shape[0]} "
                                     f"but the image is {image.shape[1]}x{image.shape[0]}")
        return plate

    def mask_for(self, image_path: Path | None, image: np.ndarray) -> np.ndarray:
        """The mask at source size: seg/NAME.* as stored, else the mask function processed."""
        if self.mask_fn is not None:
            return official_seg(self.mask_fn(image))
        found = image_path and _find(image_path.parent.parent / MASKS, image_path.stem)
        if not found:
            where = f"{image_path.parent.parent / MASKS}/{image_path.stem}.*" if image_path else "seg"
            raise MattingDeployError(f"{where}: no person mask (add seg/ or pass --seg-bundle)")
        mask = load_matte(found)
        if mask.shape != image.shape[:2]:
            raise MattingDeployError(f"{found}: mask is {mask.shape[1]}x{mask.shape[0]} "
                                     f"but the image is {image.shape[1]}x{image.shape[0]}")
        return mask

    def extra(self, image_path: Path | None, image: np.ndarray,
              plate: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``{"bgr": (1, 3, h, w), "seg": (1, 1, h, w)}`` placed like the image's model input
        (``plate``: this frame's plate, overriding the fixed one and back/)."""
        if plate is not None and plate.shape[:2] != image.shape[:2]:
            raise MattingDeployError(f"--bgr: plate is {plate.shape[1]}x{plate.shape[0]} but the "
                                     f"frame is {image.shape[1]}x{image.shape[0]}")
        plate = self.plate_for(image_path, image) if plate is None else plate
        bgr, geo = to_model_input(plate, *self.hw, resize=self.resize)
        seg = np.zeros((1, 1, *self.hw), np.float32)
        seg[0, 0, geo.top:geo.top + geo.height, geo.left:geo.left + geo.width] = resize_plane(
            self.mask_for(image_path, image), geo.height, geo.width)
        return {"bgr": bgr, "seg": seg}


def plate_reader(spec: str | Path) -> Callable[[str], np.ndarray]:
    """``infer --bgr``: one image for every frame, or a folder with a plate per frame name."""
    path = Path(spec)
    if path.is_file():
        plate = load_image(path)
        return lambda name: plate
    if not path.is_dir():
        raise MattingDeployError(f"{path}: --bgr is neither an image nor a folder of plates")

    def by_name(name: str) -> np.ndarray:
        found = _find(path, name)
        if found is None:
            raise MattingDeployError(f"{path / name}.*: no plate for frame {name}")
        return load_image(found)

    return by_name
