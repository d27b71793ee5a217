"""HFEncoder on tiny, randomly initialised checkpoints written to tmp_path (no download)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")
transformers = pytest.importorskip("transformers")

from ul4m4.encoders import HFEncoder, encode_modality  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "man", "is", "eating", "food", "."]
WORDS += ["piece", "of", "bread", "the", "cat", "sleeps"]
TEXTS = ["a man is eating food.", "the cat sleeps", "a piece of bread"]
TINY = {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32}


def _bert_tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    return transformers.BertTokenizer(vocab_file=str(vocab))


def _save(model, tokenizer_or_processor, path):
    torch.manual_seed(0)
    model.save_pretrained(path)
    for extra in tokenizer_or_processor:
        extra.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(WORDS), hidden_size=16, max_position_embeddings=32, **TINY
    )
    return _save(transformers.BertModel(config).eval(), [_bert_tokenizer(tmp)], tmp / "ckpt")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    # A WordPiece tokenizer is enough for a tiny CLIP: [CLS]/[SEP] act as start/end tokens.
    text = dict(vocab_size=len(WORDS), hidden_size=16, max_position_embeddings=32, **TINY)
    text.update(bos_token_id=2, eos_token_id=3, pad_token_id=0)
    vision = dict(hidden_size=16, image_size=32, patch_size=8, **TINY)
    config = transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    model = transformers.CLIPModel(config).eval()
    return _save(model, [_bert_tokenizer(tmp), processor], tmp / "ckpt")


def _wavlm_dir(tmp_path_factory, norm):
    tmp = tmp_path_factory.mktemp(f"wavlm-{norm}")
    torch.manual_seed(0)
    config = transformers.WavLMConfig(
        hidden_size=16,
        conv_dim=(8, 8),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        conv_bias=False,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm=norm,
        num_buckets=16,
        max_bucket_distance=64,
        **TINY,
    )
    extractor = transformers.Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
        return_attention_mask=True,
    )  # fmt: skip
    return _save(transformers.WavLMModel(config).eval(), [extractor], tmp / "ckpt")


def test_text_mean_pooling_matches_a_literal_masked_mean(bert_dir):
    enc = HFEncoder(bert_dir, "text", progress=False, batch_size=2)
    out = enc(TEXTS)
    assert out.shape == (3, 16) and enc.dim == 16 and enc.pooling == "mean"
    model = transformers.BertModel.from_pretrained(bert_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(bert_dir)
    with torch.no_grad():
        for i, text in enumerate(TEXTS):  # one text at a time: no padding at all
            ids = tok(text, return_tensors="pt")
            hidden = model(**ids).last_hidden_state[0]
            np.testing.assert_allclose(out[i], hidden.mean(0).numpy(), rtol=1e-4, atol=1e-5)
    cls = HFEncoder(bert_dir, "text", pooling="cls", progress=False)(TEXTS[:1])
    with torch.no_grad():
        first = model(**tok(TEXTS[:1], return_tensors="pt")).last_hidden_state[0, 0]
    np.testing.assert_allclose(cls[0], first.numpy(), rtol=1e-4, atol=1e-5)


def test_clip_text_and_image_give_the_projected_features(clip_dir):
    from PIL import Image

    model = transformers.CLIPModel.from_pretrained(clip_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(clip_dir)
    text = HFEncoder(clip_dir, "text", progress=False)
    image = HFEncoder(clip_dir, "image", progress=False)
    assert text.dim == image.dim == 8 and text.pooling == image.pooling == "projection"
    images = [Image.new("RGB", (40, 30), "red"), Image.new("RGBA", (32, 32), (0, 0, 255, 255))]
    with torch.no_grad():
        ids = tok(TEXTS, padding=True, return_tensors="pt")
        t_ref = model.get_text_features(**ids)
        pixels = image._processor(images=[im.convert("RGB") for im in images], return_tensors="pt")
        i_ref = model.get_image_features(pixel_values=pixels["pixel_values"])
    t_ref = getattr(t_ref, "pooler_output", t_ref)
    i_ref = getattr(i_ref, "pooler_output", i_ref)
    np.testing.assert_allclose(text(TEXTS), t_ref.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(image(images), i_ref.numpy(), rtol=1e-4, atol=1e-5)
    pooled = HFEncoder(clip_dir, "image", pooling="pooled", progress=False)
    assert pooled.dim == 16 and pooled(images).shape == (2, 16)


# torch's attention warns about WavLM's mixed mask types; not ours to fix.
AUDIO_WARNING = "ignore:Support for mismatched key_padding_mask:UserWarning"


@pytest.mark.filterwarnings(AUDIO_WARNING)
@pytest.mark.parametrize("norm", ["layer", "group"])
def test_audio_embedding_does_not_depend_on_batch_mates(tmp_path_factory, norm):
    enc = HFEncoder(_wavlm_dir(tmp_path_factory, norm), "audio", progress=False, batch_size=4)
    assert enc.sampling_rate == 16000 and enc.dim == 16
    rng = np.random.default_rng(0)
    short, long_ = rng.normal(size=800), rng.normal(size=3000)
    alone = enc([short])
    # A longer clip pads the short one; an equal-length one shares its batch even with
    # group norm (which would otherwise normalise over the padding).
    together = enc([short, long_, short[:500], short[::-1].copy()])
    np.testing.assert_allclose(together[0], alone[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(together[1], enc([long_])[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(together[3], enc([short[::-1].copy()])[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(together[0], together[1], atol=1e-3)
    with pytest.raises(ValueError, match="audio row 0: .*8000"):
        enc([(short, 8000)])
    with pytest.raises(ValueError, match=r"audio rows \[1\] are too short"):
        enc([short, np.ones(5)])


@pytest.mark.filterwarnings(AUDIO_WARNING)
def test_masked_frames_mean_matches_a_literal_implementation(tmp_path_factory):
    path = _wavlm_dir(tmp_path_factory, "layer")
    enc = HFEncoder(path, "audio", progress=False)
    model = transformers.WavLMModel.from_pretrained(path).eval()
    clip = np.random.default_rng(1).normal(size=1200).astype(np.float32)
    normed = (clip - clip.mean()) / np.sqrt(clip.var() + 1e-7)  # the extractor's normalisation
    with torch.no_grad():
        hidden = model(torch.from_numpy(normed)[None]).last_hidden_state[0]
    np.testing.assert_allclose(enc([clip])[0], hidden.mean(0).numpy(), rtol=1e-4, atol=1e-5)


def test_encode_modality_with_hf_and_cache_id(bert_dir, tmp_path):
    enc = HFEncoder(bert_dir, "text", progress=False)
    out = encode_modality(enc, [TEXTS[0], None], cache_dir=tmp_path, progress=False)
    assert np.isnan(out[1]).all() and np.allclose(out[0], enc(TEXTS[:1])[0], atol=1e-6)
    assert enc.cache_id.startswith("hf|bert|text|pooling=mean")
    assert HFEncoder(bert_dir, "text", pooling="cls", progress=False).cache_id != enc.cache_id


def test_bad_arguments_are_reported(bert_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        HFEncoder(tmp_path, "text")
    with pytest.raises(ValueError, match="modality must be one of"):
        HFEncoder(bert_dir, "video")
    with pytest.raises(ValueError, match="needs a CLIP checkpoint"):
        HFEncoder(bert_dir, "text", pooling="projection")
