"""Dataclass configurations read from yaml mappings: an unknown key is an error naming it."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Dict, Optional, Type, TypeVar

from sltk.utils.errors import UserError

T = TypeVar("T")


def dataclass_from_dict(cls: Type[T], d: Optional[Dict[str, Any]], where: str) -> T:
    """``cls(**d)`` after checking that ``d`` is a mapping of ``cls``'s field names (None: the
    defaults); a bad mapping raises :class:`UserError` naming ``where`` and the valid keys."""
    if d is None:
        return cls()
    if not isinstance(d, dict):
        raise UserError(f"{where} must be a mapping of key: value, got {type(d).__name__}")
    names = [f.name for f in fields(cls)]
    for k in d:
        if k not in names:
            raise UserError(f"unknown key '{k}' in {where} (valid keys: {', '.join(names)})")
    return cls(**d)
