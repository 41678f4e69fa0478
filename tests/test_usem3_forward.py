"""The packaged encoder's own forward pass against the wheel's, on real multilingual text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import encoder, usem3_forward
from pipeline.usem3_forward import PieceForward, _batches

FIXTURES = Path(__file__).parent / "fixtures"
STORY = json.loads((FIXTURES / "semantic" / "story_yuan.json").read_text())


def real_units() -> list[str]:
    """Titles and sentences of real articles in several languages and scripts, as the
    encoder reads them: a story in en/ru/zh, and the first article of each language of
    the translation set's tuning half."""
    articles = [(STORY[lang]["title"], STORY[lang]["text"]) for lang in ("en", "ru", "zh")]
    seen: set[str] = set()
    for line in (FIXTURES / "xlingual" / "articles.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["split"] == "dev" and row["lang"] not in seen:
            seen.add(row["lang"])
            articles.append((row["title"], row["text"]))
    units: list[str] = []
    for title, text in articles:
        found, _ = encoder.article_units(title, text, max_sentences=40, max_chars=600)
        units.extend(encoder.encoder_text(unit) for unit in found)
    return units


@pytest.fixture(scope="module")
def backend() -> object:
    return encoder.load_encoder()._model  # type: ignore[attr-defined]


def assert_same_model(ours: np.ndarray, wheel: np.ndarray) -> None:
    assert ours.shape == wheel.shape
    assert ours.dtype == np.float32
    cosines = (ours * wheel).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(wheel, axis=1)
    assert cosines.min() > 0.99999
    assert np.abs(ours - wheel).max() < 1e-5


def test_the_pass_gives_the_wheels_vectors_on_real_text(backend: object) -> None:
    units = real_units()
    assert len(units) > 60
    assert_same_model(PieceForward(backend).encode(units), backend.encode(units))  # type: ignore[attr-defined]


def test_edge_texts_match_the_wheel(backend: object) -> None:
    long_unit = " ".join(real_units())  # one text over the micro-batch budget
    texts = ["", "a", "。", "Putin Putin Putin Putin Putin", long_unit, "Си Цзиньпин"]
    ours = PieceForward(backend).encode(texts)
    assert_same_model(ours, backend.encode(texts))  # type: ignore[attr-defined]
    assert len(backend.sp.encode(long_unit)) > usem3_forward.TOKEN_BUDGET  # type: ignore[attr-defined]


def test_batches_of_many_texts_match_the_wheel(backend: object, monkeypatch: pytest.MonkeyPatch) -> None:
    # A small piece budget makes these texts several batches, each with its own pieces.
    monkeypatch.setattr(usem3_forward, "PIECE_BUDGET", 100)
    units = real_units()
    assert len(_batches([backend.sp.encode(u) for u in units], 100)) > 3  # type: ignore[attr-defined]
    assert_same_model(PieceForward(backend).encode(units), backend.encode(units))  # type: ignore[attr-defined]


@pytest.mark.parametrize("int8", [False, True], ids=["float32", "int8"])
def test_the_same_texts_give_the_same_vectors_whatever_came_before(backend: object, int8: bool) -> None:
    forward = PieceForward(backend, int8=int8)
    units = real_units()
    first = forward.encode(units[:5])
    forward.encode(units[5:])
    forward.encode([units[0] + " " + units[7]])
    assert np.array_equal(forward.encode(units[:5]), first)
    assert np.array_equal(PieceForward(backend, int8=int8).encode(units[:5]), first)


def test_the_int8_pass_stays_next_to_the_wheels_vectors(backend: object) -> None:
    units = real_units()
    ours = PieceForward(backend, int8=True).encode(units)
    wheel = backend.encode(units)  # type: ignore[attr-defined]
    cosines = (ours * wheel).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(wheel, axis=1)
    # Measured on these units: min 0.9993, median 0.99988 (the float32 pass: above 0.99999).
    assert cosines.min() > 0.998
    assert np.median(cosines) > 0.9995
    # ... and it is another computation, not the float32 pass under another name.
    assert np.median(cosines) < 0.999995


def test_the_int8_pass_on_edge_texts(backend: object) -> None:
    long_unit = " ".join(real_units())
    texts = ["", "a", "。", "Putin Putin Putin Putin Putin", long_unit, "Си Цзиньпин"]
    ours = PieceForward(backend, int8=True).encode(texts)
    wheel = backend.encode(texts)  # type: ignore[attr-defined]
    assert ours.shape == wheel.shape and ours.dtype == np.float32 and np.isfinite(ours).all()
    cosines = (ours * wheel).sum(axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(wheel, axis=1)
    assert cosines.min() > 0.998


def test_batches_are_consecutive_and_a_long_text_stands_alone() -> None:
    pieces = [[1] * 3, [1] * 4, [1] * 10, [1] * 2, [1] * 2, [1] * 5]
    assert _batches(pieces, 8) == [(0, 2), (2, 3), (3, 5), (5, 6)]
    assert _batches([], 8) == []
    assert _batches([[1] * 9], 8) == [(0, 1)]


@pytest.mark.parametrize(("model_name", "int8"), [("usem3", True), ("usem3-float32", False)])
def test_the_product_encoder_uses_this_pass(model_name: str, int8: bool) -> None:
    model = encoder.load_encoder(model_name)
    units = real_units()[:6]
    assert np.array_equal(
        model.encode(units),
        encoder._normalised(PieceForward(model._model, int8=int8).encode(units)),  # type: ignore[attr-defined]
    )


# ---------------------------------------------------------------------------- kept rows


def distinct_pieces(backend: object, texts: list[str]) -> np.ndarray:
    return np.unique([p for text in texts for p in backend.sp.encode(text, add_bos=True, add_eos=True)])  # type: ignore[attr-defined]


def test_a_pieces_int8_row_is_a_function_of_the_piece_alone(backend: object) -> None:
    # What makes kept rows sound: the same piece gives the same row, bit for bit, however
    # many other pieces are computed with it and wherever it stands among them.
    forward = PieceForward(backend, int8=True)
    pieces = distinct_pieces(backend, real_units())
    assert len(pieces) > 500

    def rows(chosen: np.ndarray) -> np.ndarray:
        out = np.empty((len(chosen), usem3_forward.ROW_WIDTH), dtype=np.float32)
        forward._piece_rows(chosen, out)
        return out

    together = rows(pieces)
    assert np.isfinite(together).all()
    for chosen in (pieces[:1], pieces[7:8], pieces[3:40], pieces[::-1], pieces[::3]):
        positions = np.searchsorted(pieces, chosen)
        assert np.array_equal(rows(chosen), together[positions])


def test_kept_rows_give_the_vectors_computed_afresh(backend: object) -> None:
    units = real_units()
    fresh = PieceForward(backend, int8=True, piece_cache=0)
    # A store smaller than what the texts use: pieces are given up and computed again.
    kept = PieceForward(backend, int8=True, piece_cache=600)
    for start in range(0, len(units), 9):
        texts = units[start : start + 9]
        assert np.array_equal(kept.encode(texts), fresh.encode(texts))
    store = kept.piece_rows
    assert store.hits > 0 and store.misses > 600  # rows were reused, and some given up
    assert len(store) == 600
    # Encoded again, the texts' pieces are mostly kept, and the vectors are unchanged.
    hits = store.hits
    assert np.array_equal(kept.encode(units[-9:]), fresh.encode(units[-9:]))
    assert store.hits > hits
    assert fresh.piece_rows.hits == 0 and len(fresh.piece_rows) == 0


def test_a_batch_larger_than_the_store_is_computed_without_it(backend: object) -> None:
    units = real_units()
    kept = PieceForward(backend, int8=True, piece_cache=50)
    assert len(distinct_pieces(backend, units[:20])) > 50
    assert np.array_equal(kept.encode(units[:20]), PieceForward(backend, int8=True).encode(units[:20]))
    assert len(kept.piece_rows) == 0


def test_the_float32_pass_keeps_no_rows(backend: object) -> None:
    # BLAS rounds a row by its position in the product: a kept row would not be the row
    # computed afresh.
    assert PieceForward(backend, piece_cache=1000).piece_rows.capacity == 0
    # Never more than the vocabulary.
    vocabulary = len(backend.table)  # type: ignore[attr-defined]
    assert PieceForward(backend, int8=True, piece_cache=10**7).piece_rows.capacity == vocabulary
    with pytest.raises(ValueError, match="piece_cache"):
        PieceForward(backend, int8=True, piece_cache=-1)


def test_the_configured_encoder_keeps_the_configured_rows() -> None:
    from pipeline.settings import EncoderSettings

    none = encoder.load_configured(EncoderSettings(cache_dir="", piece_cache=0))
    some = encoder.load_configured(EncoderSettings(cache_dir="", piece_cache=700))
    assert none._forward.piece_rows.capacity == 0  # type: ignore[attr-defined]
    assert some._forward.piece_rows.capacity == 700  # type: ignore[attr-defined]
    units = real_units()[:12]
    assert np.array_equal(some.encode(units), none.encode(units))
    assert len(some._forward.piece_rows) > 0  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="piece_cache"):
        EncoderSettings(piece_cache=200_000)
    # The settings' default is the encoder's own: one model loaded, whichever way it is asked for.
    assert EncoderSettings().piece_cache == encoder.DEFAULT_PIECE_CACHE
    assert encoder.load_encoder()._forward.piece_rows.capacity == encoder.DEFAULT_PIECE_CACHE  # type: ignore[attr-defined]
