"""Training experiments: data loaders, SQLite results store, deep fully-connected models, batched
ensembles, the trainability sweep (``python -m experiments.trainability``) and the trainable-depth
law fit (``python -m experiments.fit``)."""
