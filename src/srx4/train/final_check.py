"""The end of a run: the best weights and bicubic scored on the final check's images (every
validation image, or some training images without a validation split), and what each
DDP rank ended with, compared (the same folder, the same weights scored, bit-identical
weights), so summary.json can say a model is worse than bicubic, or that ranks drifted.
"""
import hashlib

from srx4.core import layout
from srx4.core import distributed
from srx4.core.io import file_sha256
from srx4.models import Bicubic
from srx4.models.weights import load_model


def final_check(score, run_dir, current_model, images, indices, scale: int, device):
    """score(model, dataset, indices, desc) -> Validation, the trainer's validation.
    Returns (the model's Validation, bicubic's, what was scored: the sha256 of
    best.safetensors, or "the current weights" when none)."""
    best, scored = current_model, "the current weights"
    if (run_dir / layout.WEIGHTS).is_file():        # rank 0 wrote them; every rank reads them
        best, _ = load_model(run_dir / layout.WEIGHTS, device=device)
        scored = file_sha256(run_dir / layout.WEIGHTS)
    model = score(best, images, indices, "final check")
    bicubic = score(Bicubic(scale).to(device), images, indices, "final check (bicubic)")
    return model, bicubic, scored


def fingerprint(*models) -> str:
    """The first 16 hex digits of a sha256 over the models' parameters: equal exactly when
    the weights are bit-identical."""
    digest = hashlib.sha256()
    for model in models:
        for p in model.parameters():
            digest.update(p.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def ranks_agree(rank: int, world: int, run_dir, scored: str, models, log) -> list:
    """Each rank's run folder, the weights its share of the final check scored and the
    fingerprint of its `models`, gathered on every rank; a loud line when they differ."""
    mine = {"rank": rank, "run_dir": str(run_dir), "scored": scored, "weights_fingerprint": fingerprint(*models)}
    ranks = distributed.gather(mine, world)
    for key in ("run_dir", "scored", "weights_fingerprint"):
        if len({r[key] for r in ranks}) > 1:
            log(f"WARNING: the {world} processes disagree on {key}: "
                + ", ".join(f"rank {r['rank']} {r[key]}" for r in ranks))
    return ranks
