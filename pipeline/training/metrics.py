"""Retrieval figures shared by training (checkpoint choice) and the benchmarks that judge its result.

Kept apart from the training loop so that a benchmark measuring a trained model
does not import the loop that made it.
"""

from __future__ import annotations

import numpy as np
import torch


def retrieval_figures(vectors: torch.Tensor, labels: np.ndarray, gallery: int) -> dict[str, float]:
    """Nearest-neighbour top-1 and recall@5 with the first ``gallery`` views of each class as the gallery."""
    labels_t = torch.as_tensor(labels)
    view = torch.as_tensor(np.concatenate([np.arange((labels == c).sum()) for c in np.unique(labels)]))
    is_gallery = view < gallery
    sims = vectors[~is_gallery] @ vectors[is_gallery].T
    top = sims.topk(5, dim=1).indices
    found = labels_t[is_gallery][top] == labels_t[~is_gallery][:, None]
    return {"nn_top1": found[:, 0].float().mean().item(), "recall@5": found.any(1).float().mean().item()}
