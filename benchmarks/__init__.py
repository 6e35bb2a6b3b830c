"""Benchmarks: numbers and ratios, printed, never asserted."""
