"""What a logo's text says about the vote's answer: text that names the vote's label makes that label likelier
right, text that names another label makes it less likely, by as much as the store's own logos show.

The vote's calibrated probability (:mod:`pipeline.calibration`) is turned into odds and multiplied by a
likelihood ratio: how much more often the text of a logo the vote names *right* agrees (or disagrees) with the
vote than the text of one it names *wrong*. The ratios are counted on the leave-one-out answers of a sample of
the store's human-labelled logos, read from their thumbnails (:class:`pipeline.usecases.reading.TextEvidenceResult`),
so a store whose text misleads (a brand's name printed on another brand's pack) learns it from its own labels.

Why a ratio on the vote's odds, not a third feature of the calibrator: the calibrator is fitted on every human
label's leave-one-out answer, and reading every stored thumbnail (30 a second on 2 cores) would hold a large
store's calibration for minutes; a few hundred read logos give the two ratios. It takes the text and the vote's
distances as independent once right or wrong is known (naive Bayes): a wordmark read clearly is not more or less
likely for being near its stored logos.

Example:
    >>> evidence = TextEvidence(right=100, right_agree=40, right_disagree=1, wrong=100, wrong_agree=1,
    ...                         wrong_disagree=30)
    >>> round(evidence.ratio(agrees=True), 1), round(evidence.ratio(agrees=False), 3)
    (33.4, 0.038)
    >>> round(with_ratio(0.8, evidence.ratio(agrees=True)), 3)  # the text agrees: 0.8 -> 0.99
    0.993
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pipeline.reading import TextMatch, TextPrecision
from pipeline.types import Prediction

MIN_ANSWERS = 5  # right and wrong answers (weighted) the sample needs before the text moves the vote


@dataclass(frozen=True)
class TextEvidence:
    """The sample's leave-one-out answers (weighted counts, open-set answers by the store's open-set share) by
    whether the vote was right, and how many of each had text that named the vote's winner (``agree``) or
    another label (``disagree``); and how often text alone named the sample's logos right (``precision``).
    """

    right: float = 0.0
    right_agree: float = 0.0
    right_disagree: float = 0.0
    wrong: float = 0.0
    wrong_agree: float = 0.0
    wrong_disagree: float = 0.0
    precision: TextPrecision = field(default_factory=TextPrecision)

    def ratio(self, agrees: bool) -> float:
        """P(the text agrees (or disagrees) | the vote is right) / P(the same | the vote is wrong).

        Each share is smoothed by one answer's worth of the share over right and wrong answers together, so a
        count of 0 on one side gives a large ratio, not an infinite one. 1, no evidence, until the sample holds
        :data:`MIN_ANSWERS` right and wrong answers, or when no text of the sample agrees (disagrees) at all.
        """
        if self.right < MIN_ANSWERS or self.wrong < MIN_ANSWERS:
            return 1.0
        right, wrong = (self.right_agree, self.wrong_agree) if agrees else (self.right_disagree, self.wrong_disagree)
        if right + wrong == 0:
            return 1.0
        pooled = (right + wrong) / (self.right + self.wrong)
        return ((right + pooled) / (self.right + 1.0)) / ((wrong + pooled) / (self.wrong + 1.0))


def with_ratio(probability: float, ratio: float) -> float:
    """``probability`` with its odds multiplied by ``ratio`` (0 and 1 stay)."""
    if probability <= 0.0 or probability >= 1.0:
        return probability
    odds = probability / (1.0 - probability) * ratio
    return odds / (1.0 + odds) if math.isfinite(odds) else 1.0


def hear(prediction: Prediction, match: TextMatch | None, evidence: TextEvidence,
         threshold: Callable[[str], float]) -> Prediction:
    """A calibrated answer with its logo's text heard: the vote's best guess gets the probability its text gives
    it (:func:`with_ratio`), and is named when that reaches the label's threshold, unknown when it falls short.

    Text that agrees may name a guess the vote alone left unknown (``named_by="text"``); text that names another
    label may leave unknown a label the vote gave. A label a person never lets be given (threshold 1) stays so.

    Args:
        prediction: The calibrated answer (:meth:`pipeline.calibration.Calibrator.predict`).
        match: What the logo's text names (None: nothing; the answer is returned as it is).
        evidence: The store's text evidence.
        threshold: The probability a label needs to be given.

    Example:
        >>> evidence = TextEvidence(100, 40, 1, 100, 1, 30)
        >>> unknown = Prediction(None, 0.8, guess="Lavie", guess_probability=0.8)
        >>> named = hear(unknown, TextMatch("Lavie", 1.0, "lavie"), evidence, lambda label: 0.95)
        >>> named.label, round(named.confidence, 3), named.named_by
        ('Lavie', 0.993, 'text')
        >>> given = Prediction("Lavie", 0.96, guess="Lavie", guess_probability=0.96)
        >>> hear(given, TextMatch("Aquafina", 1.0, "aquafina"), evidence, lambda label: 0.95).label is None
        True
    """
    if match is None or prediction.guess is None:
        return prediction
    probability = with_ratio(prediction.guess_probability, evidence.ratio(match.label == prediction.guess))
    if probability >= threshold(prediction.guess):
        named_by = prediction.named_by if prediction.label is not None else "text"
        return replace(prediction, label=prediction.guess, confidence=probability, guess_probability=probability,
                       named_by=named_by)
    # past the distance limit an unknown logo keeps confidence 0: only its guess carries the probability
    return replace(prediction, label=None, confidence=probability if prediction.confidence else 0.0,
                   guess_probability=probability)
