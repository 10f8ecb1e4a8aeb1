"""Markdown tables from dict rows, shared by every command that prints or writes one."""
from __future__ import annotations


def markdown_table(rows, columns) -> str:
    """``columns`` is a list of ``(header, fmt)`` where ``fmt(row) -> str``."""
    head = "| " + " | ".join(c for c, _ in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r) for _, fmt in columns) + " |" for r in rows]
    return "\n".join([head, sep] + body)


def num(key, spec=".1f", suffix=""):
    """A column formatter: ``row[key]`` formatted with ``spec``, ``-`` when missing or None."""
    def fmt(row):
        v = row.get(key)
        return "-" if v is None else format(v, spec) + suffix
    return fmt


def signed(x: float) -> str:
    """A difference to one decimal with its sign (`+1.2`, `-0.3`, never `-0.0`), `nan` when
    it is not finite."""
    import math

    return "nan" if not math.isfinite(x) else f"{round(x, 1) + 0.0:+.1f}"


def change_text(acting) -> str:
    """Acting overrides (a dict or `(field, value)` pairs) as `field=value, ...`; empty for
    none."""
    items = acting.items() if isinstance(acting, dict) else acting
    return ", ".join(f"{k}={v}" for k, v in items)
