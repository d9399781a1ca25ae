"""Around the engine, not part of it: the demo, the sample data generator and the benchmarks.

They drive the engine's modules exactly as an operator's commands do, on simulated time and
throwaway pools; nothing in ``decisions`` imports them.
"""
