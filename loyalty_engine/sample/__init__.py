"""Sample extracts with a ground truth, for the demo, the tests and the benchmarks (not used by the nightly run)."""
