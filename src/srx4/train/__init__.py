"""Training: one step and its schedule (step), validation, losses, the weight average
(ema), the run that ties them together (trainer) and a saved run read back (inspect).
May import: every layer below it (core, image, data, models, predict, runs)."""
