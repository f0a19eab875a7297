"""Benchmarks of graphpipe-client against its baselines; run them with ``nox -s bench``.

``python -m benchmarks`` (from the repository root, with the package and the
baselines installed) runs everything and prints each figure next to the
baseline measured in the same run; ``--quick`` makes a shorter run.
"""
