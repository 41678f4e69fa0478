"""The learned layer of the classifier: label heads on the multilingual encoder's vectors.

The rules of :mod:`pipeline.classify` find *mentions*: a pattern hit is evidence and the
registry is the analyst's control. What they cannot tell is whether an article is
*about* a theme (a word in a list of summit outcomes is a hit like any other), and they
miss a watch item phrased in words nobody wrote a pattern for, or in a language without
patterns. The heads add what the encoder knows:

* **Article heads.** One L2-regularised logistic regression per label (and one for
  relevance) on the article's vectors: the document vector (title and lead) and the mean
  of all its sentence vectors. Deterministic full-batch training in numpy, balanced
  class weights, so a head's logit 0 is its own decision boundary. Each head is also
  applied to every sentence on its own: the strongest sentence and the share of
  sentences the head calls positive say how much of the article carries the label.
* **Prototypes.** Each entry's ``match`` examples in ``config/topics.yaml``, encoded at
  load. Sentence-level features say how much of the article carries the label: the most
  similar sentence, the most similar title or lead sentence, and the share of sentences
  near a prototype. A watch item added to the registry has prototypes at once.
* **Combiners.** A small logistic regression per kind (topics, watch items, watch items
  without a trained head, relevance) turns the rules' numbers (assigned or not, score
  over threshold, share of sentences hit, a hit in the title or lead) and the encoder's
  numbers (head logit, sentence logits, prototype similarities) into a calibrated
  probability. So a rule
  hit carried by one listed word, with a low head logit and no similar sentences, is
  vetoed (topic = subject, not mention), and a watch item the patterns missed is
  recovered when the head and the sentences carry it.

A label is assigned at or above its kind's threshold; within ``abstain_margin`` below it
the classifier **abstains**: the label is not assigned, and it is reported as
``abstained`` so an analyst can look. In a language the patterns do not cover, a label
with a trained head also needs the head's own verdict on the article (a positive logit):
one sentence near a label's examples is not enough, and such a label is abstained. Every
assigned label keeps evidence: the rule hits when the rules found it, otherwise the
sentences most similar to its prototypes.

The trained numbers are a small committed artefact, ``pipeline/data/topic_heads.npz``,
rebuilt by ``summitwatch train-classifier`` (deterministic: the same fixtures, registry
and encoder give the same file). Thresholds were chosen by cross-validation by outlet
inside the training material; see ``tests/fixtures/classify/README.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import yaml
from numpy.typing import NDArray

from pipeline import yamlfile
from pipeline.classify import (
    TOPIC_SLUGS,
    RuleView,
    TopicRegistry,
    rule_view,
    trim_evidence,
)
from pipeline.encoder import ArticleVectors, SentenceEncoder, embed_article, encode_constant, encoder_text
from pipeline.errors import ConfigError
from pipeline.files import replace_whole
from pipeline.records import Classification, TopicHit, WatchHit

__all__ = [
    "DEFAULT_HEADS",
    "Combiner",
    "LabelHeads",
    "TrainingArticle",
    "classify_hybrid",
    "classify_with_heads",
    "load_heads",
    "read_training_articles",
    "save_heads",
    "train_heads",
]

DEFAULT_HEADS = Path(__file__).resolve().parent / "data" / "topic_heads.npz"
# Raised when a change to the classifier's code changes the labels it gives (the rules of
# classify.py and classify_hybrid): with the registry's and the learned layer's bytes it
# makes the identity `init` compares with the one the stored labels came from.
LABELS_REVISION = 1


def classifier_identity(topics_file: Path, heads_file: Path = DEFAULT_HEADS) -> str:
    """What the labels of an article depend on besides its text: the registry, the learned
    layer and the classifier's revision, as a short digest (read from the files' bytes;
    nothing is loaded)."""
    digest = hashlib.sha256(f"labels {LABELS_REVISION}\n".encode())
    for path in (topics_file, heads_file):
        try:
            content = path.read_bytes()
        except OSError:
            content = b"(missing)"
        if path.suffix in (".yaml", ".yml"):
            # The registry as read: a comment or a reflowed line changes no label.
            with contextlib.suppress(yaml.YAMLError):
                content = json.dumps(yamlfile.safe_load(content), sort_keys=True, default=str).encode()
        digest.update(content)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


Vector = NDArray[np.float64]
Matrix = NDArray[np.float64]

#: Cosine above which a sentence counts as "near" a label's prototypes.
SIMILAR = 0.45
#: Title plus this many body sentences make the lead.
LEAD = 2
FOLDS = 5
#: L2 penalty of the article heads, chosen by cross-validation by outlet on the training set.
DEFAULT_L2 = 0.0003
ARTEFACT_VERSION = 1

LABEL_FEATURES = (
    "rule_assigned",
    "rule_strength",
    "rule_share",
    "rule_in_lead",
    "head_logit",
    "prototype_max",
    "prototype_lead",
    "prototype_share",
    "patterns_apply",
    "sentence_head_max",
    "sentence_head_share",
)
RELEVANCE_FEATURES = ("gate_passed", "gate_score", "off_topic", "head_logit", "patterns_apply")


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Combiner:
    """A logistic regression over a handful of named features, with its decision threshold."""

    weights: Vector
    bias: float
    threshold: float

    def probability(self, features: Vector) -> float:
        return _sigmoid(float(features @ self.weights) + self.bias)


@dataclass(frozen=True)
class LabelHeads:
    """The trained layer: article heads, combiners, thresholds, and the prototypes.

    ``labels`` are the entries with a trained head; a registry entry without one (a watch
    item added after training) is decided by ``watch_new`` from its rules and prototypes.
    """

    model: str
    labels: tuple[str, ...]
    head_weights: Matrix
    head_bias: Vector
    relevance_weights: Vector
    relevance_bias: float
    topic: Combiner
    watch: Combiner
    watch_new: Combiner
    relevance: Combiner
    head_thresholds: Mapping[str, float]
    abstain_margin: float
    fingerprint: str
    prototypes: Mapping[str, Matrix] = field(default_factory=dict)

    def head_index(self, slug: str) -> int | None:
        return self.labels.index(slug) if slug in self.labels else None


@dataclass(frozen=True)
class TrainingArticle:
    """A labelled article for training, with the group it is cross-validated by."""

    id: str
    lang: str
    title: str
    text: str
    topics: tuple[str, ...]
    watch: tuple[str, ...]
    group: str


# ---------------------------------------------------------------------------- features


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    z = math.exp(value)
    return z / (1.0 + z)


def _unit(vector: Vector) -> Vector:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def article_features(vectors: ArticleVectors) -> Vector:
    """The heads' input: the document vector and the mean sentence vector, each unit length."""
    document = _unit(np.asarray(vectors.document, dtype=np.float64))
    sentences = np.asarray(vectors.sentences, dtype=np.float64)
    mean = _unit(sentences.mean(axis=0)) if len(sentences) else document
    return np.concatenate([document, mean]) / math.sqrt(2.0)


def _head_logits(heads: LabelHeads, features: Vector) -> tuple[Vector, float]:
    logits = heads.head_weights @ features + heads.head_bias
    relevance = float(heads.relevance_weights @ features + heads.relevance_bias)
    return np.clip(logits, -8.0, 8.0), max(-8.0, min(8.0, relevance))


def _similarities(heads: LabelHeads, slug: str, vectors: ArticleVectors) -> Vector:
    """Each unit's best cosine to the label's prototypes (zeros without prototypes)."""
    prototypes = heads.prototypes.get(slug)
    sentences = np.asarray(vectors.sentences, dtype=np.float64)
    if prototypes is None or not len(prototypes) or not len(sentences):
        return np.zeros(len(sentences))
    best: Vector = (sentences @ prototypes.T).max(axis=1)
    return best


def _label_features(
    view: RuleView,
    vectors: ArticleVectors,
    slug: str,
    head_logit: float | None,
    similarity: Vector,
    sentence_logits: Vector | None,
) -> Vector:
    """The combiner's input for one label (see ``LABEL_FEATURES``)."""
    scored = view.entries[slug]
    carried = sentence_logits if sentence_logits is not None else np.zeros(0)
    sentences = max(1, len(view.sentences))
    lead_end = (1 if view.has_title else 0) + LEAD
    units_lead = (1 if vectors.has_title else 0) + LEAD
    return np.array(
        [
            1.0 if scored.assigned else 0.0,
            min(math.log1p(scored.score / scored.threshold), 3.0),
            len(scored.hit_sentences) / sentences,
            1.0 if any(index < lead_end for index in scored.hit_sentences) else 0.0,
            0.0 if head_logit is None else head_logit,
            float(similarity.max()) if len(similarity) else 0.0,
            float(similarity[:units_lead].max()) if len(similarity) else 0.0,
            float((similarity >= SIMILAR).mean()) if len(similarity) else 0.0,
            1.0 if view.patterns_apply else 0.0,
            float(carried.max()) if len(carried) else 0.0,
            float(np.mean(carried > 0)) if len(carried) else 0.0,
        ]
    )


def _sentence_logits(weights: Matrix, bias: Vector, vectors: ArticleVectors) -> Matrix:
    """Each head applied to each sentence alone, as if it were a one-sentence article.

    (units × heads); how many sentences carry a label, and how strongly, in the head's
    own terms rather than the few registry examples'.
    """
    sentences = np.asarray(vectors.sentences, dtype=np.float64)
    half = weights.shape[1] // 2
    folded = (weights[:, :half] + weights[:, half:]) / math.sqrt(2.0)
    result: Matrix = np.clip(sentences @ folded.T + bias, -8.0, 8.0)
    return result


def _relevance_features(view: RuleView, head_logit: float) -> Vector:
    return np.array(
        [
            1.0 if view.relevant else 0.0,
            math.log1p(view.gate_score),
            math.log1p(view.off_topic),
            head_logit,
            1.0 if view.patterns_apply else 0.0,
        ]
    )


# ---------------------------------------------------------------------------- classifying


def _similar_evidence(vectors: ArticleVectors, similarity: Vector, count: int, limit: int) -> list[str]:
    """The units most similar to a label's prototypes, best first (the title last resort)."""
    if not len(similarity):
        return []
    order = sorted(range(len(similarity)), key=lambda i: (-similarity[i], i))
    return [trim_evidence(vectors.units[i], limit) for i in order[:count]]


@dataclass(frozen=True)
class _Decision:
    slug: str
    probability: float
    evidence: list[str]


def classify_hybrid(
    registry: TopicRegistry,
    heads: LabelHeads,
    *,
    title: str | None,
    text: str,
    lang: str,
    vectors: ArticleVectors,
) -> Classification:
    """Classify one article with the rules and the heads together (what the pipeline runs).

    ``vectors`` are the article's encoder vectors (ingest computes them anyway, for
    translation linking). Pure and deterministic. Scores are calibrated probabilities;
    labels within ``abstain_margin`` below their threshold are listed in ``abstained``.
    """
    view = rule_view(registry, title=title, text=text, lang=lang)
    logits, relevance_logit = _head_logits(heads, article_features(vectors))
    per_sentence = _sentence_logits(heads.head_weights, heads.head_bias, vectors)
    relevance = heads.relevance.probability(_relevance_features(view, relevance_logit))
    if relevance < heads.relevance.threshold:
        return Classification(topics=[], watch=[], relevant=False)

    scoring = registry.scoring
    decided: dict[str, _Decision] = {}
    abstained: list[str] = []
    for entry in registry.entries:
        index = heads.head_index(entry.slug)
        if entry.kind == "topic":
            combiner = heads.topic
        else:
            combiner = heads.watch if index is not None else heads.watch_new
        similarity = _similarities(heads, entry.slug, vectors)
        head_logit = float(logits[index]) if index is not None else None
        sentence_logits = per_sentence[:, index] if index is not None else None
        probability = combiner.probability(
            _label_features(view, vectors, entry.slug, head_logit, similarity, sentence_logits)
        )
        # Without patterns for the article's language only the encoder judges, and its
        # article head must agree: one sentence like a label's (a summit report's line on
        # the war read as a peace plan) is not an article about it.
        unsupported = not view.patterns_apply and head_logit is not None and head_logit <= 0.0
        if probability >= combiner.threshold and not unsupported:
            scored = view.entries[entry.slug]
            evidence = scored.evidence or _similar_evidence(
                vectors, similarity, scoring.max_evidence, scoring.evidence_chars
            )
            decided[entry.slug] = _Decision(entry.slug, round(probability, 3), evidence)
        elif probability >= combiner.threshold - heads.abstain_margin:
            abstained.append(entry.slug)  # (an unsupported label at any probability too)

    topics = {
        slug: TopicHit(slug, d.probability, d.evidence) for slug, d in decided.items() if slug in TOPIC_SLUGS
    }
    watch: list[WatchHit] = []
    for entry in registry.watch:
        found = decided.get(entry.slug)
        if found is None:
            continue
        watch.append(WatchHit(entry.slug, found.evidence, found.probability))
        # A watch item is a narrower case of its topic: coverage of the topic includes it.
        if entry.implies and entry.implies not in topics:
            topics[entry.implies] = TopicHit(entry.implies, found.probability, found.evidence)
            if entry.implies in abstained:
                abstained.remove(entry.implies)
    return _ranked(topics, watch, abstained)


def classify_with_heads(
    heads: LabelHeads, *, title: str | None, text: str, vectors: ArticleVectors, max_evidence: int = 3
) -> Classification:
    """The encoder alone, for comparison: heads and their thresholds, no patterns.

    Labels without a trained head are never assigned here. Evidence is the sentences most
    similar to each label's prototypes.
    """
    logits, relevance_logit = _head_logits(heads, article_features(vectors))
    if _sigmoid(relevance_logit) < heads.head_thresholds["relevance"]:
        return Classification(topics=[], watch=[], relevant=False)
    topics: dict[str, TopicHit] = {}
    watch: list[WatchHit] = []
    for index, slug in enumerate(heads.labels):
        probability = _sigmoid(float(logits[index]))
        kind = "topic" if slug in TOPIC_SLUGS else "watch"
        if probability < heads.head_thresholds[kind]:
            continue
        evidence = _similar_evidence(vectors, _similarities(heads, slug, vectors), max_evidence, 300)
        if kind == "topic":
            topics[slug] = TopicHit(slug, round(probability, 3), evidence)
        else:
            watch.append(WatchHit(slug, evidence, round(probability, 3)))
    return _ranked(topics, watch, [])


def _ranked(topics: dict[str, TopicHit], watch: list[WatchHit], abstained: list[str]) -> Classification:
    order = {slug: i for i, slug in enumerate(TOPIC_SLUGS)}
    return Classification(
        topics=sorted(topics.values(), key=lambda hit: (-hit.score, order.get(hit.topic, 99))),
        watch=sorted(watch, key=lambda hit: -(hit.score or 0.0)),
        relevant=True,
        abstained=abstained,
    )


# ---------------------------------------------------------------------------- loading


def load_heads(
    registry: TopicRegistry,
    *,
    encoder: SentenceEncoder,
    path: Path | None = None,
    cache_dir: Path | None = None,
) -> LabelHeads:
    """Read the trained artefact and encode the registry's examples as prototypes.

    ``cache_dir``: where the encoded examples are kept between runs (``encoder.cache_dir``).

    Raises :class:`ConfigError` when the file is missing or unreadable, or was trained on
    another encoder than ``encoder`` (vectors of different models are never compared).
    """
    path = path or DEFAULT_HEADS
    try:
        # (Opened here: np.load leaves its own handle open when the archive is cut off.)
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            stored = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # (An empty or truncated file: EOFError, BadZipFile.)
        raise ConfigError(f"{path}: cannot read the classifier heads ({exc or type(exc).__name__})") from exc
    try:
        meta = json.loads(str(stored["meta"]))
        heads = LabelHeads(
            model=meta["model"],
            labels=tuple(meta["labels"]),
            head_weights=stored["head_weights"].astype(np.float64),
            head_bias=stored["head_bias"].astype(np.float64),
            relevance_weights=stored["relevance_weights"].astype(np.float64),
            relevance_bias=float(stored["relevance_bias"]),
            topic=_combiner(stored, meta, "topic"),
            watch=_combiner(stored, meta, "watch"),
            watch_new=_combiner(stored, meta, "watch_new"),
            relevance=_combiner(stored, meta, "relevance"),
            head_thresholds=dict(meta["head_thresholds"]),
            abstain_margin=float(meta["abstain_margin"]),
            fingerprint=meta["fingerprint"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a classifier heads file of this version ({exc})") from exc
    if heads.model != encoder.name:
        raise ConfigError(
            f"{path}: trained on encoder {heads.model!r}, but encoder.model gives {encoder.name!r}; "
            "run `summitwatch train-classifier` for this encoder"
        )
    return with_prototypes(heads, registry, encoder, cache_dir=cache_dir)


def _combiner(stored: Mapping[str, Any], meta: Mapping[str, Any], name: str) -> Combiner:
    return Combiner(
        stored[f"combiner_{name}_weights"].astype(np.float64),
        float(stored[f"combiner_{name}_bias"]),
        float(meta["thresholds"][name]),
    )


def with_prototypes(
    heads: LabelHeads, registry: TopicRegistry, encoder: SentenceEncoder, *, cache_dir: Path | None = None
) -> LabelHeads:
    """``heads`` with every registry entry's ``match`` examples encoded as its prototypes."""
    texts: list[str] = []
    owners: list[str] = []
    for entry in registry.entries:
        for examples in entry.examples.values():
            for example in examples.match:
                texts.append(encoder_text(example))
                owners.append(entry.slug)
    encoded = np.zeros((0, 1))
    if texts:
        encoded = np.asarray(encode_constant(encoder, texts, cache_dir), dtype=np.float64)
    prototypes = {
        entry.slug: encoded[[i for i, owner in enumerate(owners) if owner == entry.slug]]
        for entry in registry.entries
    }
    return LabelHeads(**{**heads.__dict__, "prototypes": prototypes})


def save_heads(heads: LabelHeads, path: Path) -> None:
    """Write ``heads`` (without prototypes, which come from the registry) to ``path``."""
    meta = {
        "version": ARTEFACT_VERSION,
        "model": heads.model,
        "labels": list(heads.labels),
        "thresholds": {
            name: round(getattr(heads, name).threshold, 4)
            for name in ("topic", "watch", "watch_new", "relevance")
        },
        "head_thresholds": {k: round(v, 4) for k, v in heads.head_thresholds.items()},
        "abstain_margin": heads.abstain_margin,
        "fingerprint": heads.fingerprint,
        "label_features": list(LABEL_FEATURES),
        "relevance_features": list(RELEVANCE_FEATURES),
    }
    arrays: dict[str, Any] = {
        "meta": np.array(json.dumps(meta, sort_keys=True)),
        "head_weights": heads.head_weights.astype(np.float32),
        "head_bias": heads.head_bias.astype(np.float32),
        "relevance_weights": heads.relevance_weights.astype(np.float32),
        "relevance_bias": np.array(heads.relevance_bias, dtype=np.float32),
    }
    for name in ("topic", "watch", "watch_new", "relevance"):
        combiner: Combiner = getattr(heads, name)
        arrays[f"combiner_{name}_weights"] = combiner.weights.astype(np.float32)
        arrays[f"combiner_{name}_bias"] = np.array(combiner.bias, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed over it: a crash, a full disk or a second run
    # never leaves a truncated artefact, which every classifying process would refuse.
    replace_whole(path, lambda handle: np.savez_compressed(handle, **arrays))


# ---------------------------------------------------------------------------- training


def read_training_articles(paths: Sequence[Path]) -> list[TrainingArticle]:
    """Labelled articles from JSON-lines files (``real_train.jsonl``, ``dev.jsonl``).

    The cross-validation group is the outlet (host without ``www.``) when the item has a
    URL, so no outlet is on both sides of a fold; items without one are their own group.
    """
    articles: list[TrainingArticle] = []
    for path in paths:
        try:
            content = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the training file ({exc})") from exc
        for number, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                if not isinstance(item, dict):
                    raise TypeError("expected a JSON object")
                host = urlsplit(item["url"]).hostname if item.get("url") else None
                articles.append(
                    TrainingArticle(
                        id=str(item["id"]),
                        lang=_string(item, "lang"),
                        title=_string(item, "title", optional=True),
                        text=_string(item, "text"),
                        topics=_slugs(item, "topics"),
                        watch=_slugs(item, "watch"),
                        group=(host or "").removeprefix("www.") or f"item:{item['id']}",
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{path}:{number}: not a labelled article ({exc})") from exc
    return articles


def _string(item: Mapping[str, Any], key: str, *, optional: bool = False) -> str:
    value = item.get(key)
    if value is None and optional:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"'{key}' must be a string, not {type(value).__name__}")
    return value


def _slugs(item: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = item[key]
    if not isinstance(value, list) or not all(isinstance(slug, str) for slug in value):
        raise TypeError(f"'{key}' must be a list of label slugs")
    return tuple(value)


def check_training_labels(registry: TopicRegistry, articles: Sequence[TrainingArticle]) -> None:
    """Refuse labels the registry does not define (a misspelt slug would silently train
    that label on no positives) and a training set cross-validation cannot split."""
    topics = {entry.slug for entry in registry.topics}
    watch = {entry.slug for entry in registry.watch}
    for article in articles:
        unknown = sorted(set(article.topics) - topics) + sorted(set(article.watch) - watch)
        if unknown:
            raise ConfigError(
                f"training article {article.id}: unknown label(s) {', '.join(unknown)} "
                f"(topics: {', '.join(sorted(topics))}; watch items: {', '.join(sorted(watch))})"
            )
    empty = sorted(set(range(FOLDS)) - {_fold(article.group) for article in articles})
    if empty:
        outlets = len({article.group for article in articles})
        raise ConfigError(
            f"cross-validation by outlet needs articles in each of its {FOLDS} folds: these "
            f"{len(articles)} articles from {outlets} outlet(s) leave {len(empty)} empty "
            "(add articles from more outlets)"
        )


def _fold(group: str) -> int:
    return int(hashlib.sha256(group.encode("utf-8")).hexdigest(), 16) % FOLDS


def _fit_logistic(
    features: Matrix, targets: Matrix, *, l2: float, balanced: bool, iterations: int
) -> tuple[Matrix, Vector]:
    """Full-batch L2 logistic regression, one column of ``targets`` per label (Nesterov steps).

    Deterministic: fixed start (zeros), fixed step, fixed iteration count. With
    ``balanced`` the positives and negatives of each label weigh half each.
    """
    rows, dims = features.shape
    labels = targets.shape[1]
    if balanced:
        positives = targets.sum(axis=0)
        negatives = rows - positives
        weight_pos = np.where(positives > 0, 0.5 * rows / np.maximum(positives, 1), 0.0)
        weight_neg = np.where(negatives > 0, 0.5 * rows / np.maximum(negatives, 1), 0.0)
        sample = targets * weight_pos + (1 - targets) * weight_neg
    else:
        sample = np.ones_like(targets)
    augmented = np.hstack([features, np.ones((rows, 1))])
    # Lipschitz constant of the mean weighted log-loss gradient, plus the penalty.
    spectral = float(np.linalg.norm(augmented, ord=2)) ** 2
    step = 1.0 / (0.25 * spectral * float(sample.max()) / rows + l2)
    penalty = np.full((dims + 1, 1), l2)
    penalty[-1] = 0.0  # the bias is not shrunk
    weights = np.zeros((dims + 1, labels))
    previous = weights.copy()
    for iteration in range(1, iterations + 1):
        momentum = weights + (iteration - 1) / (iteration + 2) * (weights - previous)
        predicted = 1.0 / (1.0 + np.exp(-np.clip(augmented @ momentum, -30, 30)))
        gradient = augmented.T @ (sample * (predicted - targets)) / rows + penalty * momentum
        previous, weights = weights, momentum - step * gradient
    return weights[:-1].T.copy(), weights[-1].copy()


@dataclass(frozen=True)
class _Prepared:
    """One training article turned into everything the layers need."""

    article: TrainingArticle
    view: RuleView
    vectors: ArticleVectors
    features: Vector


def _prepare(
    registry: TopicRegistry,
    encoder: SentenceEncoder,
    articles: Sequence[TrainingArticle],
    progress: Callable[[int], None] | None = None,
) -> list[_Prepared]:
    prepared = []
    for number, article in enumerate(articles, 1):
        vectors = embed_article(encoder, article.title or None, article.text)
        view = rule_view(registry, title=article.title or None, text=article.text, lang=article.lang)
        prepared.append(_Prepared(article, view, vectors, article_features(vectors)))
        if progress and number % 50 == 0:
            progress(number)
    return prepared


def _targets(prepared: Sequence[_Prepared], labels: Sequence[str]) -> Matrix:
    return np.array(
        [[1.0 if slug in (*p.article.topics, *p.article.watch) else 0.0 for slug in labels] for p in prepared]
    )


@dataclass(frozen=True)
class _HeadFit:
    weights: Matrix
    bias: Vector
    relevance_weights: Vector
    relevance_bias: float


def _fit_heads(prepared: Sequence[_Prepared], labels: Sequence[str], l2: float) -> _HeadFit:
    features = np.stack([p.features for p in prepared])
    targets = np.hstack(
        [_targets(prepared, labels), np.array([[1.0 if p.article.topics else 0.0] for p in prepared])]
    )
    weights, bias = _fit_logistic(features, targets, l2=l2, balanced=True, iterations=1500)
    return _HeadFit(weights[:-1], bias[:-1], weights[-1], float(bias[-1]))


def _label_rows(
    prepared: Sequence[_Prepared],
    heads: LabelHeads,
    logits: Matrix,
    sentence_logits: Sequence[Matrix],
    slugs: Sequence[str],
    *,
    with_head: bool,
) -> tuple[Matrix, Vector]:
    rows, targets = [], []
    for p, article_logits, article_sentences in zip(prepared, logits, sentence_logits, strict=True):
        gold = {*p.article.topics, *p.article.watch}
        for slug in slugs:
            index = heads.labels.index(slug)
            similarity = _similarities(heads, slug, p.vectors)
            head_logit = float(article_logits[index]) if with_head else None
            carried = article_sentences[:, index] if with_head else None
            rows.append(_label_features(p.view, p.vectors, slug, head_logit, similarity, carried))
            targets.append(1.0 if slug in gold else 0.0)
    return np.array(rows), np.array(targets)


def _fit_combiner(rows: Matrix, targets: Vector) -> tuple[Vector, float]:
    weights, bias = _fit_logistic(rows, targets[:, None], l2=1e-3, balanced=False, iterations=3000)
    return weights[0], float(bias[0])


def _macro_f1(gold: NDArray[Any], predicted: NDArray[Any]) -> float:
    scores = []
    for column in range(gold.shape[1]):
        tp = float((gold[:, column] * predicted[:, column]).sum())
        fp = float(((1 - gold[:, column]) * predicted[:, column]).sum())
        fn = float((gold[:, column] * (1 - predicted[:, column])).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


_GRID = tuple(round(0.2 + 0.025 * i, 3) for i in range(29))  # 0.2 … 0.9


def _best_threshold(gold: Matrix, probabilities: Matrix) -> float:
    """The grid threshold with the best macro-F1 (ties: the higher threshold)."""
    best = max(_GRID, key=lambda t: (round(_macro_f1(gold, (probabilities >= t).astype(float)), 4), t))
    return float(best)


def _relevance_threshold(gold: Vector, probabilities: Vector, max_false_positive_rate: float) -> float:
    """The threshold with the best relevance F1 among those letting few negatives through."""
    negatives = max(1.0, float((1 - gold).sum()))
    allowed = [
        t
        for t in _GRID
        if float(((1 - gold) * (probabilities >= t)).sum()) / negatives <= max_false_positive_rate
    ] or [_GRID[-1]]
    return float(
        max(
            allowed,
            key=lambda t: (round(_macro_f1(gold[:, None], (probabilities[:, None] >= t) * 1.0), 4), -t),
        )
    )


@dataclass
class CrossValidation:
    """Out-of-fold figures on the training material (grouped by outlet)."""

    folds: int
    articles: int
    rows: dict[str, Any] = field(default_factory=dict)


def _fingerprint(registry: TopicRegistry, articles: Sequence[TrainingArticle], model: str, l2: float) -> str:
    digest = hashlib.sha256()
    digest.update(f"{ARTEFACT_VERSION}|{model}|{l2}".encode())
    for entry in registry.entries:
        digest.update(entry.slug.encode())
        for lang in sorted(entry.examples):
            digest.update("\x1f".join(entry.examples[lang].match).encode())
    for article in articles:
        digest.update(json.dumps(article.__dict__, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def train_heads(
    registry: TopicRegistry,
    encoder: SentenceEncoder,
    articles: Sequence[TrainingArticle],
    *,
    l2: float = DEFAULT_L2,
    abstain_margin: float = 0.1,
    max_false_positive_rate: float = 0.05,
    progress: Callable[[str], None] | None = None,
) -> tuple[LabelHeads, CrossValidation]:
    """Fit the heads and combiners on ``articles``; choose thresholds by cross-validation.

    Stacked in two levels, both out of fold by outlet: the heads' logits for each article
    come from heads fitted without its fold; the combiners are fitted on those logits, and
    their thresholds chosen on their own out-of-fold probabilities. The final heads and
    combiners are then fitted on everything. Deterministic.
    """
    say = progress or (lambda _message: None)
    labels = tuple(entry.slug for entry in registry.entries)
    say(f"encoding {len(articles)} articles")
    prepared = _prepare(registry, encoder, articles, lambda n: say(f"... {n} encoded"))
    folds = np.array([_fold(p.article.group) for p in prepared])
    base = with_prototypes(
        LabelHeads(
            model=encoder.name,
            labels=labels,
            head_weights=np.zeros((len(labels), 1)),
            head_bias=np.zeros(len(labels)),
            relevance_weights=np.zeros(1),
            relevance_bias=0.0,
            topic=Combiner(np.zeros(1), 0.0, 0.5),
            watch=Combiner(np.zeros(1), 0.0, 0.5),
            watch_new=Combiner(np.zeros(1), 0.0, 0.5),
            relevance=Combiner(np.zeros(1), 0.0, 0.5),
            head_thresholds={},
            abstain_margin=abstain_margin,
            fingerprint="",
        ),
        registry,
        encoder,
    )

    # Level 1: out-of-fold head logits.
    say("level 1: article heads, out of fold")
    features = np.stack([p.features for p in prepared])
    logits = np.zeros((len(prepared), len(labels)))
    relevance_logits = np.zeros(len(prepared))
    sentence_logits: list[Matrix] = [np.zeros((0, len(labels)))] * len(prepared)
    for fold in range(FOLDS):
        inside = [p for p, f in zip(prepared, folds, strict=True) if f != fold]
        fit = _fit_heads(inside, labels, l2)
        outside = folds == fold
        for position in np.flatnonzero(outside):
            sentence_logits[position] = _sentence_logits(fit.weights, fit.bias, prepared[position].vectors)
        logits[outside] = np.clip(features[outside] @ fit.weights.T + fit.bias, -8, 8)
        relevance_logits[outside] = np.clip(
            features[outside] @ fit.relevance_weights + fit.relevance_bias, -8, 8
        )

    topic_slugs = [e.slug for e in registry.topics]
    watch_slugs = [e.slug for e in registry.watch]
    gold_topics = _targets(prepared, topic_slugs)
    gold_watch = _targets(prepared, watch_slugs)
    gold_relevant = np.array([1.0 if p.article.topics else 0.0 for p in prepared])

    # Level 2: combiners, out of fold for the thresholds.
    say("level 2: combiners, out of fold")
    row_sets = {
        "topic": _label_rows(prepared, base, logits, sentence_logits, topic_slugs, with_head=True),
        "watch": _label_rows(prepared, base, logits, sentence_logits, watch_slugs, with_head=True),
        "watch_new": _label_rows(prepared, base, logits, sentence_logits, watch_slugs, with_head=False),
    }
    relevance_rows = np.array(
        [_relevance_features(p.view, float(r)) for p, r in zip(prepared, relevance_logits, strict=True)]
    )
    out_of_fold: dict[str, Vector] = {name: np.zeros(len(rows[1])) for name, rows in row_sets.items()}
    relevance_oof = np.zeros(len(prepared))
    for fold in range(FOLDS):
        for name, (rows, targets) in row_sets.items():
            per_article = len(rows) // len(prepared)
            row_folds = np.repeat(folds, per_article)
            weights, bias = _fit_combiner(rows[row_folds != fold], targets[row_folds != fold])
            chosen = row_folds == fold
            out_of_fold[name][chosen] = 1 / (1 + np.exp(-(rows[chosen] @ weights + bias)))
        weights, bias = _fit_combiner(relevance_rows[folds != fold], gold_relevant[folds != fold])
        relevance_oof[folds == fold] = 1 / (1 + np.exp(-(relevance_rows[folds == fold] @ weights + bias)))

    relevance_threshold = _relevance_threshold(gold_relevant, relevance_oof, max_false_positive_rate)
    kept = (relevance_oof >= relevance_threshold)[:, None]
    topic_probabilities = out_of_fold["topic"].reshape(len(prepared), -1) * kept
    watch_probabilities = out_of_fold["watch"].reshape(len(prepared), -1) * kept
    new_probabilities = out_of_fold["watch_new"].reshape(len(prepared), -1) * kept
    thresholds = {
        "topic": _best_threshold(gold_topics, topic_probabilities),
        "watch": _best_threshold(gold_watch, watch_probabilities),
        "watch_new": _best_threshold(gold_watch, new_probabilities),
        "relevance": relevance_threshold,
    }
    head_topic = 1 / (1 + np.exp(-logits[:, : len(topic_slugs)]))
    head_watch = 1 / (1 + np.exp(-logits[:, len(topic_slugs) :]))
    head_relevance = 1 / (1 + np.exp(-relevance_logits))
    head_thresholds = {
        "relevance": _relevance_threshold(gold_relevant, head_relevance, max_false_positive_rate)
    }
    head_kept = (head_relevance >= head_thresholds["relevance"])[:, None]
    head_thresholds["topic"] = _best_threshold(gold_topics, head_topic * head_kept)
    head_thresholds["watch"] = _best_threshold(gold_watch, head_watch * head_kept)

    report = CrossValidation(FOLDS, len(prepared))
    rules_topics = np.array(
        [
            [1.0 if p.view.relevant and p.view.entries[s].assigned else 0.0 for s in topic_slugs]
            for p in prepared
        ]
    )
    rules_watch = np.array(
        [
            [1.0 if p.view.relevant and p.view.entries[s].assigned else 0.0 for s in watch_slugs]
            for p in prepared
        ]
    )
    # Rules: a watch item implies its topic.
    for column, entry in enumerate(registry.watch):
        if entry.implies in topic_slugs:
            parent = topic_slugs.index(entry.implies)
            rules_topics[:, parent] = np.maximum(rules_topics[:, parent], rules_watch[:, column])
    hybrid_watch = (watch_probabilities >= thresholds["watch"]) * 1.0
    hybrid_topics = (topic_probabilities >= thresholds["topic"]) * 1.0
    for column, entry in enumerate(registry.watch):
        if entry.implies in topic_slugs:
            parent = topic_slugs.index(entry.implies)
            hybrid_topics[:, parent] = np.maximum(hybrid_topics[:, parent], hybrid_watch[:, column])
    report.rows["rules"] = {
        "topics_macro_f1": round(_macro_f1(gold_topics, rules_topics), 3),
        "watch_macro_f1": round(_macro_f1(gold_watch, rules_watch), 3),
    }
    report.rows["encoder"] = {
        "topics_macro_f1": round(
            _macro_f1(gold_topics, (head_topic * head_kept >= head_thresholds["topic"]) * 1.0), 3
        ),
        "watch_macro_f1": round(
            _macro_f1(gold_watch, (head_watch * head_kept >= head_thresholds["watch"]) * 1.0), 3
        ),
    }
    report.rows["hybrid"] = {
        "topics_macro_f1": round(_macro_f1(gold_topics, hybrid_topics), 3),
        "watch_macro_f1": round(_macro_f1(gold_watch, hybrid_watch), 3),
        "watch_macro_f1_without_heads": round(
            _macro_f1(gold_watch, (new_probabilities >= thresholds["watch_new"]) * 1.0), 3
        ),
    }
    report.rows["thresholds"] = thresholds
    # Calibration: among out-of-fold label probabilities in each fifth of [0, 1], the share
    # that were gold labels (a calibrated score says how often it is right).
    probabilities = np.concatenate([topic_probabilities.ravel(), watch_probabilities.ravel()])
    gold_all = np.concatenate([gold_topics.ravel(), gold_watch.ravel()])
    calibration = {}
    for low in (0.0, 0.2, 0.4, 0.6, 0.8):
        in_bin = (probabilities >= low) & (probabilities < low + 0.2 if low < 0.8 else probabilities <= 1.0)
        if in_bin.any():
            calibration[f"{low:.1f}-{low + 0.2:.1f}"] = {
                "pairs": int(in_bin.sum()),
                "mean_probability": round(float(probabilities[in_bin].mean()), 3),
                "gold_share": round(float(gold_all[in_bin].mean()), 3),
            }
    report.rows["hybrid_calibration"] = calibration
    said = relevance_oof >= relevance_threshold
    report.rows["hybrid_relevance"] = {
        "precision": round(float((said * gold_relevant).sum() / max(1, said.sum())), 3),
        "recall": round(float((said * gold_relevant).sum() / max(1, gold_relevant.sum())), 3),
        "negatives_given_a_topic": int((hybrid_topics.max(axis=1) * (1 - gold_relevant)).sum()),
        "negatives": int((1 - gold_relevant).sum()),
    }
    report.rows["hybrid_f1_per_label"] = {
        slug: round(_macro_f1(gold[:, [i]], predicted[:, [i]]), 3)
        for gold, predicted, slugs in (
            (gold_topics, hybrid_topics, topic_slugs),
            (gold_watch, hybrid_watch, watch_slugs),
        )
        for i, slug in enumerate(slugs)
    }
    report.rows["rules_f1_per_label"] = {
        slug: round(_macro_f1(gold[:, [i]], predicted[:, [i]]), 3)
        for gold, predicted, slugs in (
            (gold_topics, rules_topics, topic_slugs),
            (gold_watch, rules_watch, watch_slugs),
        )
        for i, slug in enumerate(slugs)
    }

    # Final fit on everything.
    say("final fit on all training articles")
    final = _fit_heads(prepared, labels, l2)
    # The combiners are fitted on out-of-fold logits: in-sample logits of the final heads
    # are overconfident, and the combiners must learn how far to trust a head on new text.
    combiners = {}
    for name, (rows, targets) in row_sets.items():
        weights, bias = _fit_combiner(rows, targets)
        combiners[name] = Combiner(weights, bias, thresholds[name])
    weights, bias = _fit_combiner(relevance_rows, gold_relevant)
    combiners["relevance"] = Combiner(weights, bias, thresholds["relevance"])
    heads = LabelHeads(
        model=encoder.name,
        labels=labels,
        head_weights=final.weights,
        head_bias=final.bias,
        relevance_weights=final.relevance_weights,
        relevance_bias=final.relevance_bias,
        topic=combiners["topic"],
        watch=combiners["watch"],
        watch_new=combiners["watch_new"],
        relevance=combiners["relevance"],
        head_thresholds=head_thresholds,
        abstain_margin=abstain_margin,
        fingerprint=_fingerprint(registry, articles, encoder.name, l2),
        prototypes=base.prototypes,
    )
    return heads, report
