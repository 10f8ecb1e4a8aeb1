"""The harness: command line, tables, speed benchmarks."""
