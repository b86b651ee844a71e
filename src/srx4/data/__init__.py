"""Training data: LR/HR pairs and the seeded split (pairs), the dirty-pair check (pair_check),
the decoded-image cache or, past the budgets, streaming (stream), keyed crops (patches) and their
GPU twin (device_patches), a run's data (train_data), the demo. May import: srx4.core, srx4.image."""
