"""The promotion gate: a pure decision over holdout scores."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """Whether the candidate takes the alias, and why."""

    promote: bool
    reason: str


def decide(
    metric: str,
    candidate: float,
    champion: float | None,
    greater_is_better: bool,
    min_improvement: float = 0.0,
) -> Decision:
    """Promote when there is no champion or the candidate beats it by more than the margin.

    Both scores must come from the same holdout rows, or the comparison means nothing.
    """
    if champion is None:
        return Decision(True, f"no current champion; candidate {metric}={candidate:.4f}")
    gain = candidate - champion if greater_is_better else champion - candidate
    direction = "higher" if greater_is_better else "lower"
    if gain > min_improvement:
        return Decision(
            True,
            f"candidate {metric}={candidate:.4f} beats champion {metric}={champion:.4f} "
            f"({direction} is better, margin {gain:.4f} > {min_improvement:g})",
        )
    return Decision(
        False,
        f"candidate {metric}={candidate:.4f} does not beat champion {metric}={champion:.4f} "
        f"({direction} is better, margin {gain:.4f} <= {min_improvement:g})",
    )
