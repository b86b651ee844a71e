"""Training: one step and its schedule (step), validation, losses, the weight average
(ema) and the run that ties them together (trainer).
May import: every layer below it (core, image, data, models, predict, runs)."""
