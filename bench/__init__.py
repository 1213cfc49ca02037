"""Benchmarks and the cost model (docs/cost.md): `python -m bench.run [--quick]`, or `make bench`."""
