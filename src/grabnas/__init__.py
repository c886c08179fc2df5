"""grabnas: meta neural-architecture search (GraB-NAS) with tabular benchmarks and real training."""

__version__ = "0.1.0"
