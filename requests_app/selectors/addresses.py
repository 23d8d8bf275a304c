"""Finding an instance by an address of any of its network interfaces (``Instance.network_interfaces``,
a JSON list of ``{"id", "private_ip", "subnet_id", "device_index"}``), on PostgreSQL and SQLite."""

from __future__ import annotations

from typing import Any

from django.db import NotSupportedError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BooleanField, F, Func, Value
from django.db.models.sql.compiler import SQLCompiler


class InterfaceAddressHas(Func):
    """Whether an interface's ``private_ip`` holds ``text``, ignoring case (as ``icontains``, with
    ``%``, ``_`` and ``\\`` taken literally). Only the addresses are read, not the JSON's text, so an
    interface id or a subnet does not match. Each row's short list is read where the row is, after the
    account's other filters, so the search costs what ``private_ip__icontains`` already did."""

    output_field = BooleanField()
    # A value that is not a list (none is written so) reads as no interfaces, not as an error.
    template = (
        "EXISTS (SELECT 1 FROM jsonb_array_elements(CASE WHEN jsonb_typeof(%(interfaces)s) = 'array'"
        " THEN %(interfaces)s ELSE '[]'::jsonb END) AS eni(item)"
        " WHERE STRPOS(LOWER(eni.item ->> 'private_ip'), LOWER(%(text)s)) > 0)"
    )
    template_sqlite = (
        "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(%(interfaces)s) AND json_type(%(interfaces)s) = 'array'"
        " THEN %(interfaces)s ELSE '[]' END) AS eni"
        " WHERE INSTR(LOWER(CASE WHEN eni.type = 'object' THEN json_extract(eni.value, '$.private_ip') END),"
        " LOWER(%(text)s)) > 0)"
    )

    def __init__(self, text: str, field: str = "network_interfaces") -> None:
        super().__init__(F(field), Value(text))

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[Any, ...]]:
        if connection.vendor not in ("postgresql", "sqlite"):
            raise NotSupportedError("the instance search runs on PostgreSQL and SQLite")
        interfaces, interfaces_params = compiler.compile(self.source_expressions[0])
        text, text_params = compiler.compile(self.source_expressions[1])
        template = template or (self.template_sqlite if connection.vendor == "sqlite" else self.template)
        uses = template.count("%(interfaces)s")
        # The column comes first in the SQL as many times as the template names it, then the text.
        return template % {"interfaces": interfaces, "text": text}, (*interfaces_params * uses, *text_params)
