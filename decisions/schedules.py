"""The django-q2 schedules of the engine, created or updated idempotently.

Cron schedules are read in ``Q_CLUSTER['time_zone']`` (America/New_York). Cron knows no
holidays or early closes: the tier scheduler is scheduled at 13:00 and 16:00 on weekdays and
runs only at or after the day's actual close, once; the rebalancer is scheduled every weekday
at 09:45 and runs only in the first session of the week. ``catch_up`` is off in Q_CLUSTER, so a
stopped cluster does not replay the runs it missed.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    schedule_type: str
    minutes: int | None = None
    cron: str | None = None


SCHEDULES = (
    ScheduleSpec("engine: decision cycle", "decisions.tasks.decision_cycle", Schedule.MINUTES, 1),
    ScheduleSpec(
        "engine: risk threshold monitor",
        "decisions.tasks.risk_threshold_monitor",
        Schedule.MINUTES,
        1,
    ),
    ScheduleSpec(
        "engine: performance loop", "decisions.tasks.performance_loop", Schedule.MINUTES, 5
    ),
    ScheduleSpec(
        "engine: risk tier scheduler",
        "decisions.tasks.risk_tier_scheduler",
        Schedule.CRON,
        cron="0,5 13,16 * * 1-5",
    ),
    ScheduleSpec(
        "engine: rebalancer", "decisions.tasks.rebalancer", Schedule.CRON, cron="45,50 9 * * 1-5"
    ),
    ScheduleSpec("execution: order sweeper", "execution.tasks.sweep_orders", Schedule.MINUTES, 2),
    ScheduleSpec(
        "execution: order reconciliation", "execution.tasks.reconcile_orders", Schedule.MINUTES, 5
    ),
)


def _next_run(schedule: Schedule):
    if schedule.schedule_type == Schedule.CRON:
        return schedule.calculate_next_run()
    return timezone.now()


@transaction.atomic
def setup_schedules() -> list[tuple[str, str]]:
    """Create or update every schedule by name; returns (name, "created"|"updated"|"unchanged")."""
    outcome = []
    for spec in SCHEDULES:
        values = {
            "func": spec.func,
            "schedule_type": spec.schedule_type,
            "minutes": spec.minutes,
            "cron": spec.cron,
            "repeats": -1,
        }
        existing = Schedule.objects.filter(name=spec.name).first()
        if existing is not None and all(
            getattr(existing, key) == value for key, value in values.items()
        ):
            outcome.append((spec.name, "unchanged"))
            continue
        schedule = existing or Schedule(name=spec.name)
        for key, value in values.items():
            setattr(schedule, key, value)
        # A new or changed schedule runs next at its own next time, not at "now" (django-q2's
        # default) and not at the time of the expression it replaced.
        schedule.next_run = _next_run(schedule)
        schedule.save()
        outcome.append((spec.name, "created" if existing is None else "updated"))
    return outcome
