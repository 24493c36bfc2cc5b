"""The text as evidence for the vote (pipeline/text_evidence.py, usecases/reading.py: tally): agreeing text raises a
calibrated answer's probability, contradicting text lowers it, by ratios counted on the store's own answers."""

from __future__ import annotations

import pytest

from pipeline.reading import TextMatch, TextPrecision
from pipeline.text_evidence import TextEvidence, hear, with_ratio
from pipeline.types import Prediction
from pipeline.usecases.reading import tally

EVIDENCE = TextEvidence(right=100, right_agree=40, right_disagree=1, wrong=100, wrong_agree=1, wrong_disagree=30)


def read(label: str) -> TextMatch:
    return TextMatch(label, 1.0, label.lower())


def test_text_that_agrees_names_a_guess_the_vote_left_unknown():
    unknown = Prediction(None, 0.7, {"Lavie": 0.6}, guess="Lavie", guess_probability=0.7)
    heard = hear(unknown, read("Lavie"), EVIDENCE, lambda label: 0.95)
    assert heard.label == "Lavie" and heard.named_by == "text" and heard.confidence > 0.95
    assert heard.guess_probability == heard.confidence and heard.scores == unknown.scores
    named = Prediction("Lavie", 0.97, guess="Lavie", guess_probability=0.97)
    assert hear(named, read("Lavie"), EVIDENCE, lambda label: 0.95).named_by == "vote"  # the vote had named it


def test_text_that_names_another_label_leaves_the_vote_unknown():
    named = Prediction("Lavie", 0.97, guess="Lavie", guess_probability=0.97)
    heard = hear(named, read("Aquafina"), EVIDENCE, lambda label: 0.95)
    assert heard.label is None and heard.guess == "Lavie" and heard.guess_probability < 0.97
    assert heard.confidence == heard.guess_probability


def test_a_label_people_never_let_be_given_stays_unknown_and_no_text_changes_nothing():
    unknown = Prediction(None, 0.9, guess="Lavie", guess_probability=0.9)
    assert hear(unknown, read("Lavie"), EVIDENCE, lambda label: 1.0).label is None
    assert hear(unknown, None, EVIDENCE, lambda label: 0.5) == unknown
    past_the_limit = Prediction(None, 0.0, guess="Lavie", guess_probability=0.4)
    assert hear(past_the_limit, read("Aquafina"), EVIDENCE, lambda label: 0.95).confidence == 0.0


def test_no_evidence_until_the_sample_has_right_and_wrong_answers():
    assert TextEvidence().ratio(True) == TextEvidence().ratio(False) == 1.0
    assert TextEvidence(right=50, right_agree=20, wrong=2).ratio(True) == 1.0  # too few wrong answers
    nothing_read = TextEvidence(right=50, wrong=50)
    assert nothing_read.ratio(True) == nothing_read.ratio(False) == 1.0
    assert EVIDENCE.ratio(True) > 10 and EVIDENCE.ratio(False) < 0.1
    assert with_ratio(0.5, 3.0) == pytest.approx(0.75) and with_ratio(1.0, 0.01) == 1.0


def test_tally_counts_answers_by_right_or_wrong_and_by_what_the_text_names():
    labels = ["a", "a", "b", "b"]
    matches = {0: read("a"), 1: read("b"), 2: None, 3: read("b")}
    answers = [(0, "a", False), (1, "b", False), (2, "b", False), (3, "b", False),  # row 1's vote is wrong
               (0, "b", True), (1, "b", True), (2, "a", True), (3, "a", True)]  # open set: never right
    evidence = tally(answers, matches, labels, 0.5, TextPrecision(2, 3))
    assert (evidence.right, evidence.right_agree, evidence.right_disagree) == (3, 2, 0)
    # row 1 voted b, read b: agrees though wrong; open set: row 0 reads its own (absent) label: nothing; row 1
    # reads b, the winner: agrees; row 3 reads its own label b: nothing
    assert (evidence.wrong, evidence.wrong_agree, evidence.wrong_disagree) == (5, 2, 0)
    assert evidence.precision == TextPrecision(2, 3)
    weighted = tally(answers, matches, labels, 0.75, TextPrecision())
    closed, open_ = 0.25 * 8 / 4, 0.75 * 8 / 4  # each side's share of the 8 answers, over its 4 answers
    assert weighted.right == pytest.approx(3 * closed) and weighted.wrong == pytest.approx(1 * closed + 4 * open_)
