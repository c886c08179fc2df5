"""Models: the graph VAE, the dataset encoder and the deep-kernel GP surrogate."""
