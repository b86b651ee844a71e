"""Training data: LR/HR pairs and the seeded split (pairs), the decoded-image cache,
keyed crops (patches) and their GPU twin (device_patches), a run's data (train_data), the demo.
May import: srx4.core, srx4.image."""
