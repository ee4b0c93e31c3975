"""Benchmarks behind `fh bench ...`: figures are printed, never asserted."""
