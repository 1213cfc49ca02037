"""Benchmarks and the cost model (issue 6): `python -m bench.run [--quick]`, or `make bench`."""
