"""The review topic model: one fitted, versioned LDA model shared by every snapshot partition.

Topic k only means the same thing in two partitions when both were transformed by the same fitted
model, so the model is fitted deliberately (on reviews before a cut-off), stored by a content hash
of config + vocabulary + fitted components, and ``CURRENT`` names the version snapshots use:

    <root>/<version>/model.joblib       the vectorizer and LDA (joblib; load only your own files)
    <root>/<version>/model_card.json    config, version, fitted_on, top words, library versions
    <root>/CURRENT                      the version to use, replaced atomically

A text is *blank* when it is null or only whitespace (the same rule as ``sentiment.compound``);
blank texts are never fitted on and transform to NaN rows. A non-blank text without any word of
the vocabulary (only stop words, digits or unseen words) transforms to the uniform mix 1/topics:
LDA's prior when there is no evidence.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import sklearn
from sklearn.decomposition import LatentDirichletAllocation
from sklearn.feature_extraction.text import CountVectorizer

from feature_platform.offline.location import StorePath, store_path, upload
from feature_platform.offline.store import atomic_write_bytes

# Lowercased maximal runs of at least two letters (unicode letters; digits, "_" and punctuation split).
TOKEN_PATTERN = r"(?u)[^\W\d_]{2,}"
STOP_WORDS = "english"
MODEL_FILE = "model.joblib"
CARD_FILE = "model_card.json"
CURRENT_FILE = "CURRENT"
MODELS_FOLDER = "review_topic_model"  # the fitted models' folder under the models directory
MATERIALIZE_HINT = "materialize features/review_topic_model first"
_VERSION_CHARS = 12
_VERSION_RE = re.compile(rf"^[0-9a-f]{{{_VERSION_CHARS}}}$")
_CACHE_LIMIT = 500_000  # cached text -> topic mix rows per model (a backfill re-reads the same reviews)


@dataclass(frozen=True)
class TopicModelConfig:
    """How the topic model is fitted; every field is part of the model version."""

    topics: int = 10  # LDA components; must equal the review family's config.topics
    max_features: int = 2000  # vocabulary size: the most frequent terms
    min_df: int = 2  # a term must occur in at least this many fitted texts
    seed: int = 7  # LDA random_state: same data and config give the same model
    cutoff: dt.datetime | None = None  # fit on reviews with timestamp < cutoff (naive UTC); None: all given

    def __post_init__(self) -> None:
        for name in ("topics", "max_features", "min_df"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TopicModelConfig.{name} must be an integer >= 1, got {value!r}")
        if self.cutoff is not None and self.cutoff.tzinfo is not None:
            utc = self.cutoff.astimezone(dt.UTC).replace(tzinfo=None)
            object.__setattr__(self, "cutoff", utc)  # the platform's timestamps are naive UTC

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["cutoff"] = self.cutoff.isoformat() if self.cutoff is not None else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopicModelConfig:
        cutoff = data.get("cutoff")
        return cls(**{**data, "cutoff": dt.datetime.fromisoformat(cutoff) if cutoff else None})


def is_blank(text: str | None) -> bool:
    return text is None or not text.strip()


@dataclass(eq=False)
class TopicModel:
    """A fitted vectorizer + LDA pair and where it came from. Build with fit_topic_model or load."""

    config: TopicModelConfig
    vectorizer: CountVectorizer
    lda: LatentDirichletAllocation
    fitted_on: dict[str, Any]  # {"rows": texts fitted, "cutoff": ISO or None, "max_timestamp": ISO or None}
    version: str
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def topics(self) -> int:
        return int(self.lda.n_components)

    def transform(self, texts: Iterable[str | None]) -> np.ndarray:
        """Topic mix per text, shape (n, topics), rows summing to 1; NaN rows for blank texts.

        Each document's mix depends on that document alone (LDA's transform starts every document
        from the same constant), so results are cached by text and a text is transformed once.
        """
        # is_blank(t) is true for None, which mypy cannot see: the ignores below are that (a typed rewrite
        # would change the review family's fingerprint, see registry/fingerprint.py, for no value change).
        texts = list(texts)
        out = np.full((len(texts), self.topics), np.nan)
        missing = sorted({t for t in texts if not is_blank(t) and t not in self._cache})  # type: ignore[type-var]
        if missing:
            if len(self._cache) + len(missing) > _CACHE_LIMIT:
                self._cache.clear()
            mixes = self.lda.transform(self.vectorizer.transform(missing))
            self._cache.update(zip(missing, mixes, strict=True))  # type: ignore[arg-type]
        for i, text in enumerate(texts):
            if not is_blank(text):
                out[i] = self._cache[text]  # type: ignore[index]
        return out

    def top_words(self, n: int = 8) -> list[list[str]]:
        """The ``n`` heaviest words of each topic (ties by word), for model cards and metadata."""
        words = self.vectorizer.get_feature_names_out()
        return [
            [str(words[j]) for j in np.lexsort((words, -weights))[:n]]
            for weights in self.lda.components_
        ]

    def card(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "config": self.config.to_json(),
            "fitted_on": self.fitted_on,
            "vocabulary_size": len(self.vectorizer.vocabulary_),
            "top_words": self.top_words(8),
            "tokenizer": {"token_pattern": TOKEN_PATTERN, "stop_words": STOP_WORDS, "lowercase": True},
            "libraries": {"scikit-learn": sklearn.__version__, "numpy": np.__version__},
        }


def _content_version(config: TopicModelConfig, vectorizer: CountVectorizer, lda: LatentDirichletAllocation) -> str:
    digest = hashlib.sha256()
    settings = {"config": config.to_json(), "token_pattern": TOKEN_PATTERN, "stop_words": STOP_WORDS}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    digest.update("\n".join(vectorizer.get_feature_names_out()).encode())
    digest.update(np.ascontiguousarray(lda.components_, dtype="<f8").tobytes())
    return digest.hexdigest()[:_VERSION_CHARS]


def _training_texts(reviews: pa.Table, config: TopicModelConfig) -> tuple[list[str], list[dt.datetime]]:
    """Non-blank texts with timestamp < cutoff (all with cutoff None), sorted so row order never matters."""
    missing = {"text", "timestamp"} - set(reviews.column_names)
    if missing:
        raise ValueError(f"reviews table lacks column(s) {sorted(missing)}; expected the raw reviews contract")
    texts, stamps = [], []
    for text, ts in zip(reviews.column("text").to_pylist(), reviews.column("timestamp").to_pylist(), strict=True):
        if is_blank(text) or (config.cutoff is not None and (ts is None or ts >= config.cutoff)):
            continue
        texts.append(text)
        if ts is not None:
            stamps.append(ts)
    return sorted(texts), stamps


def has_usable_text(reviews: pa.Table, config: TopicModelConfig) -> bool:
    """Whether a topic model can be fitted: non-blank texts before the cut-off that give a vocabulary
    (some word in at least ``min_df`` of them)."""
    texts = _training_texts(reviews, config)[0]
    if not texts:
        return False
    try:
        _vectorizer(config).fit(texts)
    except ValueError:  # sklearn: empty vocabulary, or min_df above the number of texts
        return False
    return True


def _vectorizer(config: TopicModelConfig) -> CountVectorizer:
    return CountVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN, stop_words=STOP_WORDS,
                           max_features=config.max_features, min_df=config.min_df)


def fit_topic_model(reviews: pa.Table, config: TopicModelConfig) -> TopicModel:
    """Fit the vectorizer and LDA on non-blank review texts before ``config.cutoff``. Deterministic."""
    texts, stamps = _training_texts(reviews, config)
    where = f"before the cut-off {config.cutoff.isoformat()}" if config.cutoff is not None else "in the given reviews"
    if not texts:
        raise ValueError(
            f"no usable review text to fit the topic model on: {reviews.num_rows} reviews, none with a "
            f"non-blank text {where}"
        )
    vectorizer = _vectorizer(config)
    try:
        counts = vectorizer.fit_transform(texts)
    except ValueError as exc:  # sklearn: empty vocabulary, or min_df above the number of texts
        raise ValueError(
            f"no vocabulary for the topic model: no word (2+ letters, not an English stop word) occurs in at "
            f"least min_df={config.min_df} of the {len(texts)} non-blank review texts {where}; lower min_df "
            f"or fit on more reviews ({exc})"
        ) from exc
    lda = LatentDirichletAllocation(
        n_components=config.topics, random_state=config.seed, learning_method="batch"
    ).fit(counts)
    fitted_on = {
        "rows": len(texts),
        "cutoff": config.cutoff.isoformat() if config.cutoff is not None else None,
        "max_timestamp": max(stamps).isoformat() if stamps else None,
    }
    return TopicModel(config, vectorizer, lda, fitted_on, _content_version(config, vectorizer, lda))


# --- storage ---------------------------------------------------------------------------------------------

def save(model: TopicModel, root: StorePath | str) -> StorePath:
    """Write ``root/<version>/`` (model + card, whole: renamed into place, or in an object store uploaded with
    the model file last) and point CURRENT at it."""
    root = store_path(root)
    target = root / model.version
    if not (target / MODEL_FILE).exists():  # same version = same content: a saved one is already this model
        local = root if isinstance(root, Path) else None
        if local is not None:
            local.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=local, prefix=f".{model.version}.tmp-"))
        try:
            parts = {
                "config": model.config.to_json(),
                "vectorizer": model.vectorizer,
                "lda": model.lda,
                "fitted_on": model.fitted_on,
                "version": model.version,
            }
            joblib.dump(parts, staging / MODEL_FILE)
            (staging / CARD_FILE).write_text(json.dumps(model.card(), indent=2) + "\n")
            if local is None:  # no rename in an object store: the card, then the model file that load looks for
                upload(staging / CARD_FILE, target / CARD_FILE)
                upload(staging / MODEL_FILE, target / MODEL_FILE)
            else:
                try:
                    os.replace(staging, local / model.version)
                except OSError:
                    if not target.exists():  # not a concurrent save of the same version: a real failure
                        raise
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    atomic_write_bytes(root / CURRENT_FILE, f"{model.version}\n".encode())
    return target


def versions(root: StorePath | str) -> list[str]:
    """Saved versions under ``root`` (folders named by a version hash)."""
    root = store_path(root)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)) if root.is_dir() else []


def load(root: StorePath | str, version: str) -> TopicModel:
    """Load one saved version and verify its content still hashes to that version."""
    root = store_path(root)
    if not _VERSION_RE.match(version):
        raise ValueError(f"{version!r} is not a topic model version ({_VERSION_CHARS} hex characters)")
    path = root / version / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no review topic model version {version} under {root} (saved: {versions(root) or 'none'}); "
            f"{MATERIALIZE_HINT}"
        )
    with path.open("rb") as fh:
        parts = joblib.load(fh)
    config = TopicModelConfig.from_json(parts["config"])
    model = TopicModel(config, parts["vectorizer"], parts["lda"], parts["fitted_on"], parts["version"])
    actual = _content_version(config, model.vectorizer, model.lda)
    if actual != version or model.version != version:
        raise ValueError(f"topic model {path} hashes to {actual}, not {version}: the file is corrupt or was edited")
    return model


def current_version(root: StorePath | str) -> str | None:
    path = store_path(root) / CURRENT_FILE
    return path.read_text().strip() if path.is_file() else None


def load_current(root: StorePath | str) -> TopicModel:
    """The model CURRENT points at; FileNotFoundError when none was saved yet."""
    version = current_version(root)
    if version is None:
        raise FileNotFoundError(f"no current review topic model under {root} (no {CURRENT_FILE} file); {MATERIALIZE_HINT}")
    return load(root, version)


def load_current_or_none(root: StorePath | str) -> TopicModel | None:
    """Like load_current, but None when no model was saved (e.g. there was no review text to fit on)."""
    version = current_version(root)
    return None if version is None else load(root, version)

