"""What several commands parse the same way."""

from __future__ import annotations


def examples(*lines: str) -> str:
    """A click epilog listing example command lines, kept as written (click's ``\\b`` marker)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def split_list(text: str | None) -> list[str] | None:
    """``"fp32, int8,fp32"`` -> ``["fp32", "int8"]`` (order kept, duplicates dropped); None if empty."""
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    return list(dict.fromkeys(items)) or None
