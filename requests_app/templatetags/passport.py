from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def hours(value: timedelta | None) -> str:
    """A duration the way people say it: "1 h", "2 h 30 min", "45 min"."""
    if value is None:
        return ""
    minutes = int(value.total_seconds() // 60)
    whole_hours, rest = divmod(minutes, 60)
    if not whole_hours:
        return f"{rest} min"
    return f"{whole_hours} h {rest} min" if rest else f"{whole_hours} h"
