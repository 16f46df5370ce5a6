"""The promotion gate decision."""

from __future__ import annotations

from training.promotion import decide


def test_without_a_champion_the_candidate_is_promoted() -> None:
    decision = decide("rmse", 5.0, None, greater_is_better=False)
    assert decision.promote
    assert decision.reason == "no current champion; candidate rmse=5.0000"


def test_lower_rmse_beats_the_champion() -> None:
    decision = decide("rmse", 4.0, 5.0, greater_is_better=False)
    assert decision.promote
    assert "beats champion rmse=5.0000" in decision.reason


def test_higher_rmse_is_refused() -> None:
    decision = decide("rmse", 6.0, 5.0, greater_is_better=False)
    assert not decision.promote
    assert "does not beat champion rmse=5.0000" in decision.reason


def test_a_tie_is_refused() -> None:
    assert not decide("rmse", 5.0, 5.0, greater_is_better=False).promote


def test_higher_r2_beats_the_champion_and_lower_does_not() -> None:
    assert decide("r2", 0.9, 0.8, greater_is_better=True).promote
    assert not decide("r2", 0.7, 0.8, greater_is_better=True).promote


def test_improvement_must_exceed_the_margin() -> None:
    assert not decide("rmse", 4.95, 5.0, greater_is_better=False, min_improvement=0.1).promote
    assert decide("rmse", 4.85, 5.0, greater_is_better=False, min_improvement=0.1).promote
