"""Recommendations from the upstream stage and the decision audit trail.

Tables: ``recommendations`` and ``execution_decisions``.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from decisions import vocabulary
from decisions.vocabulary import LabelledStrEnum
from portfolio.models import (
    FRACTION,
    MONEY,
    QUANTITY,
    ConfigVersion,
    Entity,
    Pool,
    RiskTier,
)


class RecommendationAction(models.TextChoices):
    ACT = "act", "Act"
    DEFER = "defer", "Defer"
    MONITOR = "monitor", "Monitor"
    OBSERVE = "observe", "Observe"
    NEUTRAL = "neutral", "Neutral"


#: The actions the decision loop acts on; the others are informational.
EXECUTABLE_ACTIONS = (RecommendationAction.ACT, RecommendationAction.DEFER)


class RecommendationMode(models.TextChoices):
    SIMULATION_ELIGIBLE = "simulation_eligible", "Simulation eligible"
    PRODUCTION_ELIGIBLE = "production_eligible", "Production eligible"


class Recommendation(models.Model):
    """A recommendation of the upstream engine, keyed by its upstream id."""

    id = models.CharField(primary_key=True, max_length=64)
    entity = models.ForeignKey(Entity, on_delete=models.PROTECT, related_name="recommendations")
    action = models.CharField(max_length=10, choices=RecommendationAction.choices)
    mode = models.CharField(max_length=24, choices=RecommendationMode.choices)
    confidence = models.DecimalField(max_digits=6, decimal_places=5)
    generated_at = models.DateTimeField()
    thesis = models.TextField(blank=True)
    risk_classification = models.CharField(max_length=32, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "recommendations"
        ordering = ["-generated_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(confidence__gte=0) & Q(confidence__lte=1),
                name="recommendation_confidence_range",
            ),
        ]
        indexes = [
            # The candidate query: recent, executable, highest confidence first.
            models.Index(
                fields=["generated_at", "action", "mode"], name="recommendation_candidate_idx"
            ),
            models.Index(fields=["entity", "generated_at"], name="recommendation_entity_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.action} {self.entity_id} ({self.confidence})"


def _text_choices(pure: type[LabelledStrEnum]) -> type[models.TextChoices]:
    """The Django ``TextChoices`` of a pure vocabulary: same names, values and labels."""
    return models.TextChoices(
        pure.__name__,
        [(member.name, (member.value, member.label)) for member in pure],
        module=__name__,
    )


#: How an evaluation ended; built from ``decisions.vocabulary.DecisionOutcome``.
DecisionOutcome = _text_choices(vocabulary.DecisionOutcome)
#: Why the engine did not act; built from ``decisions.vocabulary.SkipReason``, which the rules
#: and the sizer return.
SkipReason = _text_choices(vocabulary.SkipReason)


class DecisionRecord(models.Model):
    """One evaluation of one recommendation for one pool, and why it ended as it did.

    ``processed`` records whether the recommendation is done for this pool (it passed the
    deduplication check); at most one processed record exists per pool and recommendation.
    An unprocessed skip (stopped by a breaker, the window or the confidence gate) that repeats
    identically updates ``last_evaluated_at`` and ``evaluations`` instead of adding rows.
    """

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="decisions")
    recommendation = models.ForeignKey(
        "decisions.Recommendation", on_delete=models.PROTECT, related_name="decisions"
    )
    entity = models.ForeignKey(Entity, on_delete=models.PROTECT, related_name="decisions")
    action = models.CharField(max_length=10, choices=RecommendationAction.choices)
    outcome = models.CharField(max_length=10, choices=DecisionOutcome.choices)
    skip_reason = models.CharField(max_length=40, choices=SkipReason.choices, blank=True)
    processed = models.BooleanField(default=False)
    confidence = models.DecimalField(max_digits=6, decimal_places=5)
    commitment_value = models.DecimalField(
        **MONEY, null=True, blank=True, help_text="Dollar amount of the commitment"
    )
    units = models.DecimalField(**QUANTITY, null=True, blank=True)
    allocation_pct = models.DecimalField(
        **FRACTION, null=True, blank=True, help_text="Fraction of the active pool"
    )
    current_value = models.DecimalField(**MONEY, null=True, blank=True)
    risk_tier = models.CharField(max_length=20, choices=RiskTier.choices)
    pool_exposure = models.DecimalField(**MONEY, null=True, blank=True)
    active_pool = models.DecimalField(**MONEY)
    reserve_balance = models.DecimalField(**MONEY)
    circuit_breaker_active = models.BooleanField(default=False)
    correlation = models.DecimalField(max_digits=7, decimal_places=4, null=True, blank=True)
    correlation_check = models.CharField(max_length=20, blank=True)
    sector_exposure = models.DecimalField(**MONEY, null=True, blank=True)
    sector_check = models.CharField(max_length=20, blank=True)
    report_sessions_away = models.IntegerField(null=True, blank=True)
    report_proximity = models.CharField(max_length=20, blank=True)
    decision_trace = models.JSONField(default=dict)
    config_version = models.ForeignKey(
        ConfigVersion,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="decisions",
        help_text="The configuration the decision was made with (its first evaluation's); "
        "empty on records written before versions existed",
    )
    evaluated_at = models.DateTimeField(help_text="First evaluation (the cycle's clock)")
    last_evaluated_at = models.DateTimeField()
    evaluations = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "execution_decisions"
        ordering = ["-evaluated_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["pool", "recommendation"],
                condition=Q(processed=True),
                name="one_processed_decision_per_pool_recommendation",
            ),
            models.UniqueConstraint(
                fields=["pool", "recommendation", "skip_reason"],
                condition=Q(processed=False),
                name="one_pending_skip_per_reason",
            ),
            models.CheckConstraint(
                condition=Q(outcome="skip") | Q(skip_reason=""), name="skip_reason_only_on_skip"
            ),
        ]
        indexes = [
            models.Index(fields=["pool", "-evaluated_at"], name="decision_pool_time_idx"),
            models.Index(fields=["recommendation", "pool"], name="decision_recommendation_idx"),
            models.Index(fields=["outcome", "-evaluated_at"], name="decision_outcome_idx"),
            models.Index(fields=["skip_reason", "-evaluated_at"], name="decision_reason_idx"),
            models.Index(fields=["entity", "-evaluated_at"], name="decision_entity_idx"),
        ]

    def __str__(self) -> str:
        suffix = f" ({self.skip_reason})" if self.skip_reason else ""
        return f"{self.outcome} {self.entity_id}{suffix}"
