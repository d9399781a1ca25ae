"""The REST API under ``/api/v1/``: an interface over the read model and the audited actions.

It holds no rules of its own: ingest goes through the same validators as the import commands,
reads go through the read model and the audit tables, control goes through
``portfolio.actions``. See docs/api.md and the OpenAPI schema at ``/api/schema/``.
"""
