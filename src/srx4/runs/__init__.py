"""A run's folder and what shows it: last.ckpt (checkpoint), train.log and metrics.csv
(runlog), report.html (html, run_report), plots, trackers.
May import: srx4.core, srx4.image, srx4.models, srx4.predict."""
