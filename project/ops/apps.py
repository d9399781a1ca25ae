from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "project.ops"
    label = "ops"
    verbose_name = "Operations"
