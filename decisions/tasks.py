"""django-q2 task entry point of the decision loop."""

from __future__ import annotations

from django.utils import timezone

from portfolio.tasks import for_each_pool


def decision_cycle() -> list[str]:
    """One decision cycle for every pool; new orders go to the workers on commit."""
    from decisions.engine import run_decision_cycle

    now = timezone.now()

    def run(pool_id: int) -> str:
        result = run_decision_cycle(pool_id, now)
        return f"{result.candidates} candidate(s), {dict(result.outcomes)}"

    return for_each_pool("decision cycle", run)
