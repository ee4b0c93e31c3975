"""Importers: other projects' recordings turned into fh capture files."""
