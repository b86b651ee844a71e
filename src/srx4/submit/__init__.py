"""Submissions: the competition CSV (submission), the record of CSVs and uploads
(submission_log), the Kaggle CLI wrapper.
May import: srx4.core, srx4.image."""
