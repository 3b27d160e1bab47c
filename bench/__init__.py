"""ModelFleet's benchmarks: serving overhead, wake from zero, operator at scale (`python -m bench`).

Each part writes one JSON file under `bench/results/` (with the machine it ran on) and its plots;
`docs/benchmarks.md` explains the numbers and what limits them.
"""
