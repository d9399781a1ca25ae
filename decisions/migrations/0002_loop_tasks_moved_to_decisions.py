"""The guardian loops' tasks moved from ``portfolio.tasks`` to ``decisions.tasks``: schedules
already stored under the old paths follow them, so a running cluster never calls a missing
function."""

from django.db import migrations

OLD, NEW = "portfolio.tasks.", "decisions.tasks."
MOVED = ("risk_threshold_monitor", "performance_loop", "risk_tier_scheduler", "rebalancer")


def follow(apps, schema_editor, old=OLD, new=NEW):
    Schedule = apps.get_model("django_q", "Schedule")
    for name in MOVED:
        Schedule.objects.filter(func=old + name).update(func=new + name)


def back(apps, schema_editor):
    follow(apps, schema_editor, old=NEW, new=OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("decisions", "0001_initial"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(follow, back)]
