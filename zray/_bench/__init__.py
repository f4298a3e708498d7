"""Ray-style microbenchmarks (Ray's metric names) for zray or Ray: one module per
family of workloads. Entry points: ``zray microbenchmark``, ``python -m zray._bench``."""
