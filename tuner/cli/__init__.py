"""The commands, each a thin layer over the library: run, sweep, report, evaluate, compare."""
