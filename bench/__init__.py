"""Benchmarks: each script measures one stage against a raw reference in the same run and prints ratios.

``python -m bench`` (``make bench``) runs them all on the local stack and prints one table.
"""
