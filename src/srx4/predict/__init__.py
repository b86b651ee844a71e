"""Running a model on whole images: tiles, batches, AMP, x8 TTA, ensembles (inference)
and ONNX Runtime sessions (onnx).
May import: srx4.core, srx4.image, srx4.models."""
