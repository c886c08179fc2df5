"""Ask/tell optimizers: baselines and GraB-NAS."""
