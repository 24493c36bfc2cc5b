"""The benchmarks' risk-coverage figures: every cut of a score, not one threshold."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.risk_coverage import aurc, coverage_at, cut_at, risk_coverage


def test_a_perfect_ranking_answers_every_right_answer_first():
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    right = np.array([1, 1, 1, 0, 0])
    assert coverage_at(scores, right, 0.95) == pytest.approx(0.6)
    assert cut_at(scores, right, 0.95) == 0.7
    assert aurc(scores, right) == pytest.approx(np.mean([0, 0, 0, 0.25, 0.4]))
    reversed_aurc = aurc(-scores, right)  # the worst ranking: wrong answers first
    assert reversed_aurc > aurc(scores, right)


def test_ties_are_answered_together_and_no_cut_means_no_coverage():
    coverage, risk = risk_coverage(np.array([0.5, 0.5, 0.5]), np.array([1, 0, 1]))
    assert coverage.tolist() == [1.0] and risk.tolist() == pytest.approx([1 / 3])
    assert coverage_at(np.array([0.5, 0.4]), np.array([0, 0]), 0.9) == 0.0
    assert cut_at(np.array([0.5, 0.4]), np.array([0, 0]), 0.9) == float("inf")
