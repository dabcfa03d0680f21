"""Comprehend's sentiment computed offline: VADER's lexicon scores mapped to AWS's answer shape.

VADER (vaderSentiment 3.3.2, lexicon shipped in the package) gives the share of positive, negative and
neutral words and a `compound` polarity in [-1, 1]. AWS answers a label (POSITIVE, NEGATIVE, NEUTRAL,
MIXED) and four scores that sum to 1 with the label's score the highest. The mapping: compound >= 0.05
is POSITIVE, <= -0.05 NEGATIVE (VADER's own thresholds), else NEUTRAL; clearly positive and negative
words together (each >= 15% of the text, |compound| < 0.5) are MIXED. The label's score is
0.5 + 0.5 x its strength (|compound|, the neutral share, or the balance of positive and negative); the
rest is shared by the other three in proportion to VADER's shares. A lexicon model, not Comprehend's:
labels agree on clear texts; the scores are not AWS's numbers.
"""

from __future__ import annotations

import threading
from typing import Any

LANGUAGES = ("ar", "hi", "ko", "zh-TW", "ja", "zh", "de", "pt", "en", "it", "fr", "es")  # AWS's enum
COMPUTED_LANGUAGES = ("en",)
MAX_TEXT_BYTES = 5000
MAX_BATCH = 25
_lock = threading.Lock()
_analyzer: Any = None


def analyzer() -> Any:
    """VADER's analyzer, loaded once (reading its lexicon takes ~0.1 s)."""
    global _analyzer
    with _lock:
        if _analyzer is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            _analyzer = SentimentIntensityAnalyzer()
        return _analyzer


def label(scores: dict[str, float]) -> str:
    pos, neg, compound = scores["pos"], scores["neg"], scores["compound"]
    if pos >= 0.15 and neg >= 0.15 and abs(compound) < 0.5:
        return "MIXED"
    if compound >= 0.05:
        return "POSITIVE"
    if compound <= -0.05:
        return "NEGATIVE"
    return "NEUTRAL"


def detect(text: str) -> dict[str, Any]:
    """{"Sentiment": ..., "SentimentScore": {"Positive", "Negative", "Neutral", "Mixed"}} for one text."""
    scores = analyzer().polarity_scores(text)
    pos, neg, neu, compound = scores["pos"], scores["neg"], scores["neu"], scores["compound"]
    sentiment = label(scores)
    weights = {"Positive": pos, "Negative": neg, "Neutral": neu, "Mixed": min(pos, neg)}
    strength = {"POSITIVE": abs(compound), "NEGATIVE": abs(compound), "NEUTRAL": neu,
                "MIXED": 2 * min(pos, neg) / (pos + neg) if pos + neg else 0.0}[sentiment]
    top_name = sentiment.capitalize()
    top = 0.5 + 0.5 * min(max(strength, 0.0), 0.999)
    others = {name: weight + 0.001 for name, weight in weights.items() if name != top_name}
    total = sum(others.values())
    result = {name: (1.0 - top) * weight / total for name, weight in others.items()}
    result[top_name] = top
    return {"Sentiment": sentiment,
            "SentimentScore": {name: result[name] for name in ("Positive", "Negative", "Neutral", "Mixed")}}
