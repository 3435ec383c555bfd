"""Performance helpers for bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


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
