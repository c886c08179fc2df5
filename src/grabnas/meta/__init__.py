"""Meta-learning: corpora, training loops and checkpoints."""
