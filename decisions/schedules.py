"""The django-q2 schedules of the engine, created or updated idempotently.

Cron schedules are read in ``Q_CLUSTER['time_zone']`` (America/New_York). Cron knows no
holidays or early closes: the tier scheduler is scheduled at 13:00 and 16:00 on weekdays and
runs only at or after the day's actual close, once; the rebalancer is scheduled every weekday
at 09:45 and runs only in the first session of the week; the daily bar refresh runs at 16:20
on weekdays and fetches the last complete session's bars (after an early close or on a holiday
too: an upsert, so a run that finds them stored changes nothing); position reconciliation runs
every 15 minutes from 09:00 to 16:45 on weekdays (on a holiday it compares books and a broker
that did not move, which is harmless). ``catch_up`` is off in
Q_CLUSTER, so a stopped cluster does not replay the runs it missed.

The order event export runs every 5 minutes and writes only when ``EVENTS_EXPORT_DESTINATION``
is set (``decisions.tasks.export_order_events``; unset, a run returns at once).

The order recovery (lease settler and sweeper) must run every ~30 s, below django-q2's finest
schedule (once a minute): two once-a-minute schedules, (a) on the minute and (b) 30 s after
it (``offset_seconds``). A minute schedule keeps the second of its ``next_run`` (django-q2
adds whole minutes), so the offset holds; ``setup_schedules`` puts it back if an edit moved
it. The arithmetic is in docs/decisions.md, "Leases: recovery in seconds". The order status
sync (``execution.tasks.sync_orders``: fills of the orders the broker is still working) runs
every ~30 s the same way, 15 s after each recovery run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    schedule_type: str
    minutes: int | None = None
    cron: str | None = None
    #: For a minute schedule: the second of the minute it runs at (django-q2 adds whole
    #: minutes to ``next_run``, so the second holds from run to run).
    offset_seconds: int | None = None


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
    ScheduleSpec(
        "market data: daily bar refresh",
        "decisions.tasks.refresh_daily_bars",
        Schedule.CRON,
        cron="20 16 * * 1-5",
    ),
    ScheduleSpec(
        "execution: order recovery (a)",
        "execution.tasks.recover_orders",
        Schedule.MINUTES,
        1,
        offset_seconds=0,
    ),
    ScheduleSpec(
        "execution: order recovery (b)",
        "execution.tasks.recover_orders",
        Schedule.MINUTES,
        1,
        offset_seconds=30,
    ),
    ScheduleSpec(
        "execution: order reconciliation", "execution.tasks.reconcile_orders", Schedule.MINUTES, 5
    ),
    ScheduleSpec(
        "execution: order status sync (a)",
        "execution.tasks.sync_orders",
        Schedule.MINUTES,
        1,
        offset_seconds=15,
    ),
    ScheduleSpec(
        "execution: order status sync (b)",
        "execution.tasks.sync_orders",
        Schedule.MINUTES,
        1,
        offset_seconds=45,
    ),
    ScheduleSpec(
        "execution: position reconciliation",
        "decisions.tasks.reconcile_positions_all",
        Schedule.CRON,
        cron="*/15 9-16 * * 1-5",
    ),
    ScheduleSpec(
        "lakehouse: order event export",
        "decisions.tasks.export_order_events",
        Schedule.MINUTES,
        5,
    ),
)

#: Schedules of earlier versions, deleted by ``setup_schedules``: the 2-minute sweeper is now
#: part of the order recovery.
RETIRED_SCHEDULES = ("execution: order sweeper",)


def _next_run(schedule: Schedule, spec: ScheduleSpec):
    if schedule.schedule_type == Schedule.CRON:
        return schedule.calculate_next_run()
    now = timezone.now()
    if spec.offset_seconds is None:
        return now
    # The slot of this minute: due now or within the minute, then every minute on that second.
    return now.replace(second=0, microsecond=0) + timedelta(seconds=spec.offset_seconds)


def _on_its_second(schedule: Schedule, spec: ScheduleSpec) -> bool:
    if spec.offset_seconds is None:
        return True
    next_run = schedule.next_run
    return (
        next_run is not None
        and next_run.second == spec.offset_seconds
        and next_run.microsecond == 0
    )


@transaction.atomic
def setup_schedules() -> list[tuple[str, str]]:
    """Create or update every schedule by name and delete the retired ones; returns
    (name, "created"|"updated"|"unchanged") for each schedule of ``SCHEDULES``."""
    retired, _ = Schedule.objects.filter(name__in=RETIRED_SCHEDULES).delete()
    if retired:
        logger.info("deleted %s retired schedule(s): %s", retired, ", ".join(RETIRED_SCHEDULES))
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
        if (
            existing is not None
            and all(getattr(existing, key) == value for key, value in values.items())
            and _on_its_second(existing, spec)
        ):
            outcome.append((spec.name, "unchanged"))
            continue
        schedule = existing or Schedule(name=spec.name)
        for key, value in values.items():
            setattr(schedule, key, value)
        # A new or changed schedule runs next at its own next time, not at "now" (django-q2's
        # default) and not at the time of the expression it replaced.
        schedule.next_run = _next_run(schedule, spec)
        schedule.save()
        outcome.append((spec.name, "created" if existing is None else "updated"))
    return outcome
