"""vrthinker_eval (the eval/ folder): the field's benchmarks (loaders, metrics, the join with judgments), and
synthetic and real test footage."""
