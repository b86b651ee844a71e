"""The bottom layer: what every step needs and nothing domain-specific.
Atomic file writes and small formats (io), paths and Kaggle folders, the command-line
config (cli), progress, DDP helpers, device and dtype choice (system), GPU memory cap.
May import: nothing of srx4 outside core."""
