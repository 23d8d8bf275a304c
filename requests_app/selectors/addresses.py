"""Finding an instance by an address of any of its network interfaces (``Instance.network_interfaces``,
a JSON list of ``{"id", "private_ip", "subnet_id", "device_index"}``), on PostgreSQL and SQLite."""

from __future__ import annotations

from django.db.models import BooleanField, F, Value

from core.sql_functions import TwoDialectFunc


class InterfaceAddressHas(TwoDialectFunc):
    """Whether an interface's ``private_ip`` holds ``text``, ignoring case (as ``icontains``, with
    ``%``, ``_`` and ``\\`` taken literally). Only the addresses are read, not the JSON's text, so an
    interface id or a subnet does not match. Each row's short list is read where the row is, after the
    account's other filters, so the search costs what ``private_ip__icontains`` already did."""

    output_field = BooleanField()
    arg_names = ("interfaces", "text")
    what = "the instance search"
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
