"""Performance benchmarks: they measure and write CSV + plots under results/perf/; they never assert timings."""
