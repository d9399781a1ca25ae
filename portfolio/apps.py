from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortfolioConfig(AppConfig):
    name = "portfolio"
    verbose_name = "Portfolio: pools, commitments, market data"

    def ready(self) -> None:
        from portfolio.config_versions import forget_known_versions

        # A migration or a flush (which ends with post_migrate) may remove stored versions.
        post_migrate.connect(
            forget_known_versions, sender=self, dispatch_uid="portfolio.forget_known_versions"
        )
