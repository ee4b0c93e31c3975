"""Shared-memory segments, layouts, seqlock and ring protocols, and the reader API strategies use."""
