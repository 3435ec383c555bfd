"""Performance helpers for bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from pydantic import BaseModel


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while loading and planning: parsing YAML and building
    models allocate millions of objects and no cycles worth collecting, and the collector's
    passes over them cost as much as the parsing itself (measured: 3.0 s -> 1.45 s for 7 MB)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def share_fields_sets(models: Iterable[BaseModel]) -> None:
    """Let frozen models that were given the same fields share one ``model_fields_set``.

    pydantic keeps a set of the fields given for every instance (728 bytes for seven fields: more
    than the values themselves), and the specs and the world hold one model per customer and per
    subscription, nearly all alike: shared, 50,000 customers take 400 MB less. Safe for frozen
    models only, whose set pydantic never changes (a copy gets a set of its own)."""
    last: set[str] | None = None
    for model in models:
        fields = model.__pydantic_fields_set__
        if fields == last:
            object.__setattr__(model, "__pydantic_fields_set__", last)
        else:
            last = fields
