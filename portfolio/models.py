"""Resource pools, entities, market data, commitments and the pool-level audit tables.

Money and quantities are ``Decimal``. Fractions (0.05 = 5 %) are stored as fractions, never as
percents; every fraction has a database check constraint. Datetimes are aware and stored in UTC.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import F, Q

MONEY = {"max_digits": 20, "decimal_places": 4}
QUANTITY = {"max_digits": 20, "decimal_places": 4}
FRACTION = {"max_digits": 9, "decimal_places": 6}


def fraction_check(field: str, *, allow_zero: bool = False, upper: str = "1") -> Q:
    lower = Q(**{f"{field}__gte": 0}) if allow_zero else Q(**{f"{field}__gt": 0})
    return lower & Q(**{f"{field}__lte": Decimal(upper)})


class RiskTier(models.TextChoices):
    CONSERVATIVE = "conservative", "Conservative"
    MODERATE = "moderate", "Moderate"
    AGGRESSIVE = "aggressive", "Aggressive"


#: Order in which the tier controller steps up and down.
TIER_LADDER = (RiskTier.CONSERVATIVE, RiskTier.MODERATE, RiskTier.AGGRESSIVE)


class PoolMode(models.TextChoices):
    SIMULATION = "simulation", "Simulation"
    PRODUCTION = "production", "Production"


class AdapterKind(models.TextChoices):
    PAPER = "paper", "Paper broker (in-process)"
    HTTP = "http", "HTTP execution API (Alpaca-compatible)"


class RiskTierConfig(models.Model):
    """One row per risk tier: the source's tier table, exactly (migration 0002 creates them)."""

    name = models.CharField(max_length=20, choices=RiskTier.choices, unique=True)
    level = models.PositiveSmallIntegerField(unique=True, help_text="0 = most conservative")
    min_confidence = models.DecimalField(**FRACTION, help_text="Fraction, e.g. 0.75")
    max_position_pct = models.DecimalField(**FRACTION, help_text="Fraction of the active pool")
    stop_loss_atr_multiplier = models.DecimalField(max_digits=6, decimal_places=3)
    reward_risk_ratio = models.DecimalField(max_digits=6, decimal_places=3)
    max_sector_pct = models.DecimalField(**FRACTION, help_text="Fraction of the active pool")
    max_portfolio_heat = models.DecimalField(**FRACTION, help_text="Fraction of the active pool")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "risk_tier_configs"
        ordering = ["level"]
        verbose_name = "risk tier"
        constraints = [
            models.CheckConstraint(
                condition=fraction_check("min_confidence"), name="tier_conf_frac"
            ),
            models.CheckConstraint(
                condition=fraction_check("max_position_pct"), name="tier_position_frac"
            ),
            models.CheckConstraint(
                condition=fraction_check("max_sector_pct"), name="tier_sector_frac"
            ),
            models.CheckConstraint(
                condition=fraction_check("max_portfolio_heat"), name="tier_heat_frac"
            ),
            models.CheckConstraint(
                condition=Q(stop_loss_atr_multiplier__gt=0) & Q(reward_risk_ratio__gt=0),
                name="tier_multipliers_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.get_name_display()


class Pool(models.Model):
    """A resource pool: cash, the reserve carved out of it, its risk tier and its broker.

    ``cash`` is every unit of currency the pool holds, the reserve included; the reserve is an
    earmark on that cash that sizing never uses (active pool = total value − reserve).
    """

    name = models.SlugField(max_length=64, unique=True)
    mode = models.CharField(max_length=20, choices=PoolMode.choices, default=PoolMode.SIMULATION)
    adapter = models.CharField(
        max_length=20, choices=AdapterKind.choices, default=AdapterKind.PAPER
    )
    cash = models.DecimalField(**MONEY, validators=[MinValueValidator(0)])
    reserve_balance = models.DecimalField(**MONEY, default=Decimal("0"))
    risk_tier = models.CharField(
        max_length=20, choices=RiskTier.choices, default=RiskTier.CONSERVATIVE
    )
    halted = models.BooleanField(default=False, help_text="Manual halt: no new entries")
    halt_reason = models.CharField(max_length=500, blank=True)
    last_tier_evaluation = models.DateField(
        null=True, blank=True, help_text="Session whose close last ran the risk tier scheduler"
    )
    last_rebalance_session = models.DateField(
        null=True, blank=True, help_text="Session in which the weekly rebalancer last ran"
    )
    shadow_of = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="shadows",
        help_text="The pool this paper pool follows: the same recommendations, in the same "
        "cycles, with its own settings (docs/decisions.md, 'Shadow pools')",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pools"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(reserve_balance__gte=0), name="pool_reserve_nonneg"),
            # A shadow never sends an order anywhere but the paper broker.
            models.CheckConstraint(
                condition=Q(shadow_of__isnull=True) | Q(adapter="paper"),
                name="shadow_pool_is_paper",
            ),
            models.CheckConstraint(condition=~Q(shadow_of=F("id")), name="shadow_pool_not_itself"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_shadow(self) -> bool:
        return self.shadow_of_id is not None

    @property
    def accepted_modes(self) -> tuple[str, ...]:
        """Recommendation modes this pool takes: production pools only production-eligible."""
        if self.mode == PoolMode.PRODUCTION:
            return ("production_eligible",)
        return ("simulation_eligible", "production_eligible")


class Entity(models.Model):
    """A tradable instrument (the source's entity) and its sector."""

    symbol = models.CharField(max_length=16, primary_key=True)
    name = models.CharField(max_length=200, blank=True)
    sector = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "entities"
        ordering = ["symbol"]
        verbose_name_plural = "entities"

    def __str__(self) -> str:
        return self.symbol


class SnapshotSource(models.TextChoices):
    IMPORT = "import", "Imported (file or REST API)"
    DATA_API = "data_api", "Fetched from the market data API"


class MarketSnapshot(models.Model):
    """A daily bar, or an intraday value, of an entity as of ``as_of`` (the data point)."""

    entity = models.ForeignKey(Entity, on_delete=models.PROTECT, related_name="snapshots")
    as_of = models.DateTimeField()
    open = models.DecimalField(**MONEY, null=True, blank=True)
    high = models.DecimalField(**MONEY)
    low = models.DecimalField(**MONEY)
    close = models.DecimalField(**MONEY)
    volume = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(
        max_length=10,
        choices=SnapshotSource.choices,
        default=SnapshotSource.IMPORT,
        help_text="Where the values came from: an import, or the market data API (a latest "
        "trade stored for a decision, or a daily bar of the scheduled refresh)",
    )

    class Meta:
        db_table = "market_snapshots"
        ordering = ["-as_of"]
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "as_of"], name="snapshot_entity_as_of_unique"
            ),
            models.CheckConstraint(
                condition=Q(close__gt=0) & Q(low__gt=0) & Q(high__gte=F("low")),
                name="snapshot_values_sane",
            ),
        ]
        indexes = [models.Index(fields=["as_of"], name="snapshot_as_of_idx")]

    def __str__(self) -> str:
        return f"{self.entity_id} {self.as_of:%Y-%m-%d %H:%M} {self.close}"


class PerformanceReport(models.Model):
    """A scheduled performance report (earnings) date of an entity."""

    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="reports")
    report_date = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "performance_report_calendar"
        ordering = ["report_date"]
        constraints = [
            models.UniqueConstraint(fields=["entity", "report_date"], name="report_unique"),
        ]
        indexes = [models.Index(fields=["report_date"], name="report_date_idx")]

    def __str__(self) -> str:
        return f"{self.entity_id} reports {self.report_date}"


class CommitmentStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class Commitment(models.Model):
    """An open (or closed) position of a pool in one entity."""

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="commitments")
    entity = models.ForeignKey(Entity, on_delete=models.PROTECT, related_name="commitments")
    status = models.CharField(
        max_length=10, choices=CommitmentStatus.choices, default=CommitmentStatus.OPEN
    )
    units = models.DecimalField(**QUANTITY, help_text="Units currently held")
    entry_value = models.DecimalField(**MONEY, help_text="Average entry value per unit")
    entry_cost = models.DecimalField(**MONEY, help_text="Capital deployed (units × entry value)")
    risk_tier = models.CharField(max_length=20, choices=RiskTier.choices)
    atr_at_entry = models.DecimalField(**MONEY, null=True, blank=True)
    atr = models.DecimalField(**MONEY, null=True, blank=True, help_text="ATR last used for levels")
    risk_threshold = models.DecimalField(**MONEY, null=True, blank=True, help_text="Stop level")
    gain_target = models.DecimalField(**MONEY, null=True, blank=True, help_text="Target level")
    highest_value = models.DecimalField(**MONEY, null=True, blank=True)
    trailing_active = models.BooleanField(default=False)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    exit_value = models.DecimalField(**MONEY, null=True, blank=True)
    realized_gain = models.DecimalField(**MONEY, default=Decimal("0"))
    close_reason = models.CharField(max_length=32, blank=True)
    siphoned = models.BooleanField(
        default=False, help_text="The reserve siphon for this closed commitment is done"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "commitments"
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["pool", "entity"],
                condition=Q(status="open"),
                name="one_open_commitment_per_entity",
            ),
            models.CheckConstraint(condition=Q(units__gte=0), name="commitment_units_nonneg"),
        ]
        indexes = [
            models.Index(fields=["pool", "status"], name="commitment_pool_status_idx"),
            models.Index(fields=["pool", "closed_at"], name="commitment_pool_closed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.entity_id} × {self.units} ({self.status})"


class PoolSnapshot(models.Model):
    """Daily pool-wide performance metrics: one row per pool per session."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="snapshots")
    session = models.DateField()
    taken_at = models.DateTimeField()
    total_value = models.DecimalField(**MONEY)
    cash = models.DecimalField(**MONEY)
    reserve_balance = models.DecimalField(**MONEY)
    active_pool = models.DecimalField(**MONEY)
    unrealized_gain = models.DecimalField(**MONEY)
    realized_gain = models.DecimalField(**MONEY)
    daily_gain = models.DecimalField(**MONEY, default=Decimal("0"))
    success_rate = models.DecimalField(**FRACTION, null=True, blank=True)
    risk_adjusted_return = models.FloatField(null=True, blank=True, help_text="Annualized Sharpe")
    peak_to_trough = models.DecimalField(**FRACTION, default=Decimal("0"))
    pool_exposure = models.DecimalField(**MONEY, default=Decimal("0"))
    open_commitments = models.PositiveIntegerField(default=0)
    risk_tier = models.CharField(max_length=20, choices=RiskTier.choices)

    class Meta:
        db_table = "pool_snapshots"
        ordering = ["-session"]
        constraints = [
            models.UniqueConstraint(
                fields=["pool", "session"], name="snapshot_pool_session_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pool_id} {self.session}"


class LedgerTrigger(models.TextChoices):
    PROFIT_SIPHON = "profit_siphon", "Profit siphon"
    EMERGENCY_LIQUIDATION = "emergency_liquidation", "Emergency liquidation"
    MANUAL = "manual", "Manual adjustment"


class ReserveLedgerEntry(models.Model):
    """An append-only movement of the reserve pool balance."""

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="ledger")
    trigger = models.CharField(max_length=32, choices=LedgerTrigger.choices)
    amount = models.DecimalField(**MONEY, help_text="Positive into the reserve, negative out")
    balance_after = models.DecimalField(**MONEY)
    entity = models.ForeignKey(Entity, on_delete=models.PROTECT, null=True, blank=True)
    commitment = models.ForeignKey(
        Commitment, on_delete=models.PROTECT, null=True, blank=True, related_name="ledger_entries"
    )
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "reserve_pool_ledger"
        ordering = ["-created_at", "-id"]
        verbose_name = "reserve ledger entry"
        verbose_name_plural = "reserve ledger"
        constraints = [
            models.UniqueConstraint(
                fields=["commitment"],
                condition=Q(trigger="profit_siphon"),
                name="one_siphon_per_commitment",
            ),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="ledger_balance_nonneg"),
        ]
        indexes = [models.Index(fields=["pool", "created_at"], name="ledger_pool_created_idx")]

    def __str__(self) -> str:
        return f"{self.trigger} {self.amount}"


class TierTrigger(models.TextChoices):
    AUTO = "auto_adjustment", "Automatic adjustment"
    MANUAL = "manual", "Manual"
    INITIAL = "initial", "Pool created"


class RiskTierHistory(models.Model):
    """Every change of a pool's active risk tier, with the metrics or reason behind it."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="tier_history")
    previous_tier = models.CharField(max_length=20, choices=RiskTier.choices, blank=True)
    new_tier = models.CharField(max_length=20, choices=RiskTier.choices)
    trigger = models.CharField(max_length=32, choices=TierTrigger.choices)
    metrics = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=150, blank=True)
    changed_at = models.DateTimeField()

    class Meta:
        db_table = "risk_tier_history"
        ordering = ["-changed_at", "-id"]
        verbose_name_plural = "risk tier history"
        indexes = [models.Index(fields=["pool", "changed_at"], name="tier_pool_changed_idx")]

    def __str__(self) -> str:
        return f"{self.previous_tier or '—'} → {self.new_tier}"


class BreakerType(models.TextChoices):
    DAILY_LOSS = "daily_loss", "Daily loss"
    SINGLE_POSITION = "single_position", "Single commitment loss"
    VOLATILITY = "volatility", "Volatility (risk threshold clustering)"


class CircuitBreakerEvent(models.Model):
    """A circuit breaker trigger: the database is the truth, the cache only mirrors it."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="breaker_events")
    trigger_type = models.CharField(max_length=32, choices=BreakerType.choices)
    entity = models.ForeignKey(Entity, on_delete=models.PROTECT, null=True, blank=True)
    triggered_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    figures = models.JSONField(default=dict, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.CharField(max_length=150, blank=True)
    clear_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "circuit_breaker_events"
        ordering = ["-triggered_at", "-id"]
        indexes = [
            models.Index(fields=["pool", "expires_at"], name="breaker_pool_expires_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(expires_at__gte=F("triggered_at")), name="breaker_expiry_after_trigger"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.trigger_type} until {self.expires_at:%Y-%m-%d %H:%M}"


#: EngineConfig fields that are fractions in (0, 1].
ENGINE_FRACTION_FIELDS = (
    "declining_commitments_share",
    "declining_loss_pct",
    "correlation_reduce_threshold",
    "correlation_reject_threshold",
    "report_reduce_factor",
    "daily_loss_pct",
    "single_position_loss_pct",
    "siphon_pct",
    "high_water_pct",
    "emergency_drawdown_pct",
    "atr_change_pct",
    "trailing_activation_pct",
    "heat_tighten_pct",
    "tier_downgrade_success_rate",
    "tier_downgrade_drawdown",
    "tier_upgrade_success_rate",
    "tier_upgrade_reserve_pct",
    "tier_upgrade_max_drawdown",
)


class EngineConfig(models.Model):
    """Every other number of the source, per pool, read at the start of each cycle.

    Field names follow the source (``polling_interval_seconds``, ``daily_loss_pct``…).
    Fractions are fractions: 0.05 means 5 %.
    """

    pool = models.OneToOneField(Pool, on_delete=models.CASCADE, related_name="engine_config")
    # Decision loop
    polling_interval_seconds = models.PositiveIntegerField(default=60)
    recommendation_max_age_minutes = models.PositiveIntegerField(default=120)
    max_recommendations_per_cycle = models.PositiveIntegerField(default=50)
    max_active_commitments = models.PositiveIntegerField(default=10)
    absolute_commitment_cap = models.DecimalField(**MONEY, default=Decimal("50"))
    declining_commitments_share = models.DecimalField(**FRACTION, default=Decimal("0.5"))
    declining_loss_pct = models.DecimalField(**FRACTION, default=Decimal("0.02"))
    correlation_reduce_threshold = models.DecimalField(**FRACTION, default=Decimal("0.5"))
    correlation_reject_threshold = models.DecimalField(**FRACTION, default=Decimal("0.8"))
    correlation_lookback_sessions = models.PositiveIntegerField(default=30)
    diversification_bonus = models.DecimalField(
        max_digits=6, decimal_places=3, default=Decimal("1.2")
    )
    diversification_min_sectors = models.PositiveIntegerField(default=3)
    report_reject_sessions = models.PositiveIntegerField(default=1)
    report_reduce_sessions = models.PositiveIntegerField(default=3)
    report_reduce_factor = models.DecimalField(**FRACTION, default=Decimal("0.5"))
    dedupe_ttl_hours = models.PositiveIntegerField(default=24)
    # Circuit breaker
    daily_loss_pct = models.DecimalField(**FRACTION, default=Decimal("0.05"))
    single_position_loss_pct = models.DecimalField(**FRACTION, default=Decimal("0.15"))
    stop_loss_hits_threshold = models.PositiveIntegerField(default=3)
    stop_loss_window_minutes = models.PositiveIntegerField(default=30)
    volatility_pause_hours = models.PositiveIntegerField(default=2)
    ticker_cooldown_hours = models.PositiveIntegerField(default=48)
    # Reserve pool
    siphon_pct = models.DecimalField(**FRACTION, default=Decimal("0.2"))
    high_water_pct = models.DecimalField(**FRACTION, default=Decimal("0.3"))
    emergency_drawdown_pct = models.DecimalField(**FRACTION, default=Decimal("0.25"))
    # Risk thresholds
    atr_period = models.PositiveIntegerField(default=14)
    atr_change_pct = models.DecimalField(**FRACTION, default=Decimal("0.1"))
    trailing_activation_pct = models.DecimalField(**FRACTION, default=Decimal("0.5"))
    heat_tighten_pct = models.DecimalField(**FRACTION, default=Decimal("0.8"))
    # Risk tier controller
    tier_downgrade_success_rate = models.DecimalField(**FRACTION, default=Decimal("0.4"))
    tier_downgrade_drawdown = models.DecimalField(**FRACTION, default=Decimal("0.15"))
    tier_upgrade_success_rate = models.DecimalField(**FRACTION, default=Decimal("0.55"))
    tier_upgrade_reserve_pct = models.DecimalField(**FRACTION, default=Decimal("0.2"))
    tier_upgrade_max_drawdown = models.DecimalField(**FRACTION, default=Decimal("0.05"))
    success_rate_lookback_days = models.PositiveIntegerField(default=30)
    min_closed_for_success_rate = models.PositiveIntegerField(
        default=5,
        help_text="Closed commitments the lookback window must hold before its success rate "
        "counts as evidence for a tier change",
    )
    risk_free_rate = models.DecimalField(
        **FRACTION, default=Decimal("0"), help_text="Annual, for the Sharpe ratio (0.04 = 4 %)"
    )
    # Paper broker
    paper_slippage_bps = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0"))
    updated_at = models.DateTimeField(auto_now=True)
    # Market data
    market_data_fallback = models.BooleanField(
        default=False,
        help_text="When a candidate has no current value in market_snapshots, ask the market "
        "data API for its latest trade and store it (needs MARKET_DATA_API_URL)",
    )

    FRACTION_FIELDS = ENGINE_FRACTION_FIELDS
    POSITIVE_FIELDS = (
        "polling_interval_seconds",
        "recommendation_max_age_minutes",
        "max_recommendations_per_cycle",
        "max_active_commitments",
        "correlation_lookback_sessions",
        "diversification_min_sectors",
        "report_reduce_sessions",
        "dedupe_ttl_hours",
        "stop_loss_hits_threshold",
        "stop_loss_window_minutes",
        "volatility_pause_hours",
        "ticker_cooldown_hours",
        "atr_period",
        "success_rate_lookback_days",
        "min_closed_for_success_rate",
    )

    class Meta:
        db_table = "risk_configs"
        verbose_name = "engine configuration"
        constraints = [
            *[
                models.CheckConstraint(condition=fraction_check(name), name=f"cfg_{name}_frac")
                for name in ENGINE_FRACTION_FIELDS
            ],
            models.CheckConstraint(
                condition=Q(correlation_reduce_threshold__lt=F("correlation_reject_threshold")),
                name="cfg_correlation_order",
            ),
            models.CheckConstraint(
                condition=Q(report_reject_sessions__lt=F("report_reduce_sessions")),
                name="cfg_report_order",
            ),
            models.CheckConstraint(
                condition=Q(absolute_commitment_cap__gt=0), name="cfg_cap_positive"
            ),
            models.CheckConstraint(
                condition=Q(risk_free_rate__gte=0) & Q(risk_free_rate__lt=1),
                name="cfg_risk_free_rate_range",
            ),
            models.CheckConstraint(
                condition=Q(diversification_bonus__gte=1), name="cfg_bonus_at_least_one"
            ),
        ]

    def __str__(self) -> str:
        return f"Engine configuration of {self.pool}"


class PoolRiskConfig(models.Model):
    """The execution gate's own limits of a pool: a second line of defence behind the engine.

    Pool configuration like ``EngineConfig``: read by the worker's risk evaluation
    (``execution.risk``), changed only through ``portfolio.actions.change_pool_risk_limits``.
    """

    pool = models.OneToOneField(Pool, on_delete=models.CASCADE, related_name="risk_config")
    max_open_commitments = models.PositiveIntegerField(default=10)
    max_sector_pct = models.DecimalField(**FRACTION, default=Decimal("0.4"))
    max_daily_loss_pct = models.DecimalField(**FRACTION, default=Decimal("0.05"))
    max_order_notional = models.DecimalField(**MONEY, default=Decimal("10000"))
    max_orders_per_minute = models.PositiveIntegerField(default=120)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pool_risk_configs"
        verbose_name = "pool risk configuration"
        constraints = [
            models.CheckConstraint(
                condition=fraction_check("max_sector_pct"), name="poolrisk_sector_frac"
            ),
            models.CheckConstraint(
                condition=fraction_check("max_daily_loss_pct"), name="poolrisk_loss_frac"
            ),
            models.CheckConstraint(
                condition=Q(max_order_notional__gt=0), name="poolrisk_notional_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"Risk limits of {self.pool}"


class ConfigVersion(models.Model):
    """One version of a pool's configuration: the canonical document of its engine settings and
    every risk tier's parameters, stored under its SHA-256 (``portfolio.config_versions``).

    Content-addressed: the row is written the first time a decision cycle runs with that
    content and never changed; pools whose settings are equal share it. Every decision record
    names the version it was made with (``execution_decisions.config_version_id``).
    """

    digest = models.CharField(
        max_length=64, primary_key=True, help_text="SHA-256 (hex) of the canonical content"
    )
    content = models.JSONField(
        help_text="The canonical document: engine settings and tier parameters, decimals as "
        "text, keys sorted"
    )
    first_pool = models.ForeignKey(
        Pool,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The pool whose decision cycle first used this version",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "config_versions"
        ordering = ["-created_at", "digest"]
        verbose_name = "configuration version"
        indexes = [models.Index(fields=["-created_at"], name="config_version_created_idx")]

    def __str__(self) -> str:
        return self.short_digest

    @property
    def short_digest(self) -> str:
        return self.digest[:8]


class FillSide(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class Fill(models.Model):
    """One fill booked into the pool's books: units bought or sold at a value, and what it moved.

    Written by ``portfolio.books.book_fill`` in the transaction that stores the broker's answer.
    ``order_filled_quantity`` is the order's cumulative filled quantity after this fill, so each
    increment of an order is booked once (unique per order).
    """

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="fills")
    entity = models.ForeignKey(Entity, on_delete=models.PROTECT, related_name="fills")
    commitment = models.ForeignKey(
        Commitment, on_delete=models.PROTECT, null=True, blank=True, related_name="fills"
    )
    order = models.ForeignKey(
        "execution.Order", on_delete=models.PROTECT, null=True, blank=True, related_name="fills"
    )
    side = models.CharField(max_length=4, choices=FillSide.choices)
    units = models.DecimalField(**QUANTITY)
    value = models.DecimalField(**MONEY, help_text="Value per unit")
    order_filled_quantity = models.DecimalField(**QUANTITY)
    realized_gain = models.DecimalField(**MONEY, null=True, blank=True)
    reason = models.CharField(max_length=32, blank=True, help_text="Why the order was placed")
    booked_at = models.DateTimeField(help_text="When the broker filled it")

    class Meta:
        db_table = "fills"
        ordering = ["-booked_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(units__gt=0), name="fill_units_positive"),
            models.CheckConstraint(condition=Q(value__gt=0), name="fill_value_positive"),
            models.UniqueConstraint(
                fields=["order", "order_filled_quantity"], name="one_booking_per_fill_increment"
            ),
        ]
        indexes = [models.Index(fields=["pool", "booked_at"], name="fill_pool_booked_idx")]

    def __str__(self) -> str:
        return f"{self.side} {self.units} {self.entity_id} at {self.value}"


class OperatorActionKind(models.TextChoices):
    CREATE_POOL = "create_pool", "Create pool"
    HALT = "halt", "Halt"
    RESUME = "resume", "Resume"
    SET_RISK_TIER = "set_risk_tier", "Set risk tier"
    CLEAR_BREAKER = "clear_breaker", "Clear circuit breaker"
    CHANGE_ENGINE_CONFIG = "change_engine_config", "Change engine configuration"
    CHANGE_POOL_RISK_LIMITS = "change_pool_risk_limits", "Change pool risk limits"
    CHANGE_TIER_CONFIG = "change_tier_config", "Change risk tier parameters"
    RUN_CYCLE = "run_cycle", "Run a decision cycle"
    ACKNOWLEDGE_RECONCILIATION = "acknowledge_reconciliation", "Acknowledge a reconciliation"


class OperatorAction(models.Model):
    """The audit row of one operator action: who, when, what, before → after, and why.

    Written by ``portfolio.actions`` in the same transaction as the change itself, whichever
    interface (admin, command, API) asked for it. Append-only.
    """

    pool = models.ForeignKey(
        Pool, on_delete=models.PROTECT, null=True, blank=True, related_name="operator_actions"
    )
    action = models.CharField(max_length=32, choices=OperatorActionKind.choices)
    actor = models.CharField(max_length=150)
    reason = models.CharField(max_length=500)
    via = models.CharField(max_length=20, blank=True, help_text="admin, command or api")
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "operator_actions"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["pool", "-created_at"], name="opaction_pool_created_idx"),
            models.Index(fields=["action", "-created_at"], name="opaction_action_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(actor="") & ~Q(reason=""), name="opaction_actor_reason_required"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"


# --- position reconciliation ------------------------------------------------------------------

#: Books and broker values of a reconciliation: units as the broker reports them (fractional
#: quantities up to 9 decimal places) and dollars.
RECONCILED_VALUE = {"max_digits": 28, "decimal_places": 9}


class ReconciliationSubject(models.TextChoices):
    UNITS = "units", "Units of an entity"
    CASH = "cash", "Cash"


class ReconciliationStatus(models.TextChoices):
    OPEN = "open", "Open: entity held reduce-only"
    ACKNOWLEDGED = "acknowledged", "Acknowledged by an operator"


class ReconciliationEvent(models.Model):
    """A difference between the pool's books and the broker's account, found by position
    reconciliation (``execution.reconciliation``): the units of one entity, or the cash.

    While ``open``, an entity with a ``units`` event is held reduce-only (no entry by the
    decision engine or the execution gate; exits pass). Only an operator closes it,
    through ``portfolio.actions.acknowledge_reconciliation``; reconciliation itself never
    changes the books nor closes an event. A run that finds the same difference again updates
    the open event (``last_seen_at``, ``seen_count``, the values as last seen); a run that
    finds the books and the broker agreeing again sets ``agreed_at`` and leaves the event open
    for the operator. At most one open event per pool and subject (a database constraint).
    """

    pool = models.ForeignKey(Pool, on_delete=models.PROTECT, related_name="reconciliation_events")
    subject = models.CharField(max_length=10, choices=ReconciliationSubject.choices)
    symbol = models.CharField(
        max_length=16,
        blank=True,
        help_text="The entity whose units differ (a symbol the broker reports may be unknown "
        "to the books); blank for cash",
    )
    books_value = models.DecimalField(
        **RECONCILED_VALUE, help_text="What the books say, as last seen: units or dollars"
    )
    broker_value = models.DecimalField(
        **RECONCILED_VALUE, help_text="What the broker says, as last seen: units or dollars"
    )
    status = models.CharField(
        max_length=20, choices=ReconciliationStatus.choices, default=ReconciliationStatus.OPEN
    )
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    seen_count = models.PositiveIntegerField(default=1, help_text="Runs that found the difference")
    agreed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a later run found the books and the broker agreeing again (the event "
        "stays open until acknowledged); cleared if the difference comes back",
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    acknowledge_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "reconciliation_events"
        ordering = ["-first_seen_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["pool", "subject", "symbol"],
                condition=Q(status="open"),
                name="one_open_reconciliation_per_subject",
            ),
            models.CheckConstraint(
                condition=(Q(subject="units") & ~Q(symbol="")) | (Q(subject="cash") & Q(symbol="")),
                name="reconciliation_symbol_matches_subject",
            ),
            models.CheckConstraint(
                condition=(Q(status="open") & Q(acknowledged_at__isnull=True))
                | (
                    Q(status="acknowledged")
                    & Q(acknowledged_at__isnull=False)
                    & ~Q(acknowledged_by="")
                    & ~Q(acknowledge_reason="")
                ),
                name="reconciliation_acknowledged_with_who_and_why",
            ),
            models.CheckConstraint(
                condition=Q(last_seen_at__gte=F("first_seen_at")) & Q(seen_count__gte=1),
                name="reconciliation_seen_consistent",
            ),
        ]
        indexes = [
            models.Index(fields=["pool", "status"], name="reconciliation_pool_status_idx"),
            models.Index(fields=["-first_seen_at", "-id"], name="reconciliation_seen_idx"),
        ]

    def __str__(self) -> str:
        what = f"{self.symbol} units" if self.subject == ReconciliationSubject.UNITS else "cash"
        return f"{what}: books {self.books_value}, broker {self.broker_value} ({self.status})"

    @property
    def difference(self) -> Decimal:
        """The broker's value less the books' (units or dollars)."""
        return self.broker_value - self.books_value

    @property
    def is_open(self) -> bool:
        return self.status == ReconciliationStatus.OPEN


class LoopRun(models.Model):
    """The last run of one loop of one pool (the decision cycle, the four guardian loops): a
    heartbeat, upserted by ``portfolio.heartbeat`` at the end of every run. ``/healthz`` reads
    the age of the last decision cycle from it. Times are wall-clock UTC, whatever clock the
    loop itself ran on."""

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="loop_runs")
    loop = models.CharField(max_length=40)
    last_started_at = models.DateTimeField()
    last_finished_at = models.DateTimeField()
    last_detail = models.CharField(max_length=500, blank=True)

    class Meta:
        db_table = "loop_runs"
        ordering = ["pool", "loop"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "loop"], name="looprun_pool_loop_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.loop} of {self.pool_id} at {self.last_finished_at:%Y-%m-%d %H:%M:%S}"


class TelemetryCounter(models.Model):
    """A monotonic counter of one pool, added to by every process in the transaction of what
    it counts (``portfolio.telemetry``) and read by ``/metrics`` without scanning the tables
    it counts.

    - ``metric="decisions"``: evaluations of recommendations by ``outcome`` and ``reason``
      (the skip reason; blank for ``act`` and ``defer``); ``le`` is blank.
    - a histogram (``cycle_duration_seconds``, ``recommendation_to_order_seconds``): one row per
      cumulative bucket, ``le`` its upper bound in seconds (``+Inf`` for the last), ``total`` the
      observations at most that long; the ``+Inf`` row also carries ``sum_seconds``, the sum of
      every observation. ``outcome`` and ``reason`` are blank.
    """

    pool = models.ForeignKey(Pool, on_delete=models.CASCADE, related_name="telemetry_counters")
    metric = models.CharField(max_length=40)
    outcome = models.CharField(max_length=20, blank=True)
    reason = models.CharField(max_length=40, blank=True)
    le = models.CharField(max_length=12, blank=True, help_text="Bucket bound in seconds, or +Inf")
    total = models.BigIntegerField(default=0)
    sum_seconds = models.FloatField(default=0.0)

    class Meta:
        db_table = "telemetry_counters"
        ordering = ["pool", "metric", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["pool", "metric", "outcome", "reason", "le"],
                name="telemetry_counter_unique",
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="telemetry_counter_nonneg"),
        ]

    def __str__(self) -> str:
        labels = ", ".join(v for v in (self.outcome, self.reason, self.le and f"le={self.le}") if v)
        return f"{self.metric}{{{labels}}} {self.total}"
