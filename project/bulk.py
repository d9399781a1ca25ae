"""Fast bulk writes: insert for the audit tables, update for a batch of orders.

A decision cycle writes up to thousands of ``execution_decisions`` rows, each with a JSON trace.
``bulk_create`` spends most of its time preparing and quoting parameters in Python; on
PostgreSQL, ``COPY … FROM STDIN`` streams the same rows through psycopg's C copy path at a
fraction of the cost. The primary keys are drawn from the table's sequence first (one query),
so the caller gets ``pk`` set on every object exactly as ``bulk_create`` would.

``bulk_update`` writes each object's own values of some fields in one statement. Django's
``bulk_update`` builds a ``CASE WHEN id = … THEN …`` per field and row, and compiling those
expressions costs more than the statement: for a batch of 50 orders and a dozen fields, most of
the answer transaction's time, under its pool lock. On PostgreSQL it is one ``UPDATE … FROM
(VALUES …)`` with a typed placeholder per value.

Other databases use ``bulk_create`` and ``bulk_update``. Both paths write the same columns and
values (tested).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models
from django.utils import timezone


def bulk_insert(model: type[models.Model], objs: Sequence[models.Model], using="default") -> None:
    """Insert ``objs`` (new instances of ``model``) and set their primary keys."""
    if not objs:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        model.objects.using(using).bulk_create(objs, batch_size=1000)
        return
    opts = model._meta
    fields = list(opts.concrete_fields)
    now = timezone.now()
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for obj in objs:
                if getattr(obj, field.attname) is None or field.auto_now:
                    setattr(obj, field.attname, now)
    quote = connection.ops.quote_name
    table = quote(opts.db_table)
    columns = ", ".join(quote(f.column) for f in fields)
    json_fields = {f.attname for f in fields if isinstance(f, models.JSONField)}
    attnames = [f.attname for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [opts.db_table, opts.pk.column, len(objs)],
        )
        for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
            obj.pk = pk
        with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for obj in objs:
                copy.write_row(
                    [
                        json.dumps(getattr(obj, name), cls=DjangoJSONEncoder)
                        if name in json_fields
                        else getattr(obj, name)
                        for name in attnames
                    ]
                )
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using


def bulk_update(
    model: type[models.Model], objs: Sequence[models.Model], fields: Iterable[str], using="default"
) -> int:
    """Write ``fields`` (names) of ``objs`` (saved instances of ``model``), each object's own
    values, in one statement; the number of rows updated. Unlike ``save``, nothing fills an
    ``auto_now`` field: set it on the objects and name it."""
    fields = [model._meta.get_field(name) for name in dict.fromkeys(fields)]
    if not objs or not fields:
        return 0
    connection = connections[using]
    if connection.vendor != "postgresql":
        return model.objects.using(using).bulk_update(objs, [f.name for f in fields])
    pk = model._meta.pk
    quote = connection.ops.quote_name
    columns = [pk, *fields]
    row = "(" + ", ".join(f"%s::{f.db_type(connection)}" for f in columns) + ")"
    sql = (
        f"UPDATE {quote(model._meta.db_table)} AS t SET "
        + ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
        + f" FROM (VALUES {', '.join([row] * len(objs))}) "
        + f"AS v ({', '.join(quote(f.column) for f in columns)}) "
        + f"WHERE t.{quote(pk.column)} = v.{quote(pk.column)}"
    )
    params = [
        field.get_db_prep_save(getattr(obj, field.attname), connection)
        for obj in objs
        for field in columns
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount
