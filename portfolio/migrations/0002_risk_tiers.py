"""Create the three risk tiers with the source document's table, exactly."""

from decimal import Decimal

from django.db import migrations

# name: (level, min_confidence, max_position_pct, stop_loss_atr_multiplier, reward_risk_ratio,
#        max_sector_pct, max_portfolio_heat)
SOURCE_TIERS = {
    "conservative": (0, "0.75", "0.05", "1.5", "2.0", "0.20", "0.10"),
    "moderate": (1, "0.55", "0.10", "2.0", "1.5", "0.30", "0.20"),
    "aggressive": (2, "0.40", "0.15", "2.5", "1.2", "0.40", "0.30"),
}


def create_tiers(apps, schema_editor):
    RiskTierConfig = apps.get_model("portfolio", "RiskTierConfig")
    for name, (level, conf, position, stop, reward, sector, heat) in SOURCE_TIERS.items():
        RiskTierConfig.objects.update_or_create(
            name=name,
            defaults={
                "level": level,
                "min_confidence": Decimal(conf),
                "max_position_pct": Decimal(position),
                "stop_loss_atr_multiplier": Decimal(stop),
                "reward_risk_ratio": Decimal(reward),
                "max_sector_pct": Decimal(sector),
                "max_portfolio_heat": Decimal(heat),
            },
        )


def remove_tiers(apps, schema_editor):
    apps.get_model("portfolio", "RiskTierConfig").objects.filter(name__in=SOURCE_TIERS).delete()


class Migration(migrations.Migration):
    dependencies = [("portfolio", "0001_initial")]

    operations = [migrations.RunPython(create_tiers, remove_tiers)]
