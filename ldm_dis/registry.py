"""Components chosen by name: every registry is a plain dict from a name to a class (or function), and
every name is checked here, so a misspelt one fails with the key, the value and the nearest valid name.

    cls = lookup(BOTTLENECKS, "model.bottleneck.kind", "dygaa")
    # UserInputError: `model.bottleneck.kind`='dygaa' is unknown; did you mean 'dyga'? expected one of ...
"""

from __future__ import annotations

import difflib
from typing import Iterable, Mapping, Optional, Type, TypeVar

from ldm_dis.errors import UserInputError

T = TypeVar("T")


def unknown_name(key: str, value, valid: Iterable) -> Optional[str]:
    """None when ``value`` is among ``valid``; else the message naming ``key``, the nearest valid name and all."""
    valid = list(valid)
    if value in valid:
        return None
    near = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1, cutoff=0.5)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return f"`{key}`={value!r} is unknown; {hint}expected one of {', '.join(map(repr, valid))}"


def lookup(registry: Mapping[str, T], key: str, name, error: Type[UserInputError] = UserInputError) -> T:
    """``registry[name]``; an unknown ``name`` raises ``error`` with :func:`unknown_name`'s message."""
    problem = unknown_name(key, name, sorted(registry))
    if problem:
        raise error(problem)
    return registry[name]
