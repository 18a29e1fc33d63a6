"""eval: the field's benchmarks (loaders, metrics, the join with judgments), and synthetic and real test footage."""
