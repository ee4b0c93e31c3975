"""Shared-memory segments, layouts, seqlock and ring protocols, and the reader API strategies use."""
from .jitcache import configure as _configure_jit_cache

_configure_jit_cache()
