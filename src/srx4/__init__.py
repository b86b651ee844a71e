"""srx4: x4 single-image super-resolution for Kaggle competitions: train, predict, submit.

The package behind the scripts of src/ (ARCHITECTURE.md: one folder per step, the
layering rule). `pip install -e .` makes it importable anywhere and adds the srx4-*
commands (srx4.commands); the scripts run without installing.
"""
__version__ = "0.12.0"
