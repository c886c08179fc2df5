"""Integrations of grabnas with other tools.

* :mod:`grabnas.integrations.optuna`: GraB-NAS as an Optuna sampler (``GraBNASSampler``); needs
  ``pip install grabnas[optuna]``. Nothing here is imported with ``grabnas`` itself.
"""
