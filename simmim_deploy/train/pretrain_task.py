"""The SimMIM pre-training task for the engine: masked-pixel loss and reconstruction previews."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from simmim_deploy.core.atomic import atomic_path
from simmim_deploy.data.pretrain_dataset import PretrainDataset
from simmim_deploy.data.transforms import denormalize
from simmim_deploy.models.loss import simmim_loss
from simmim_deploy.train.engine import TrainTask

# Seeds of the preview samples live far from any (seed, epoch) a run uses.
_PREVIEW_EPOCH = 2**31 - 1


class SimMIMTask(TrainTask):
    """Loss ``simmim_loss(images, model(images, mask), mask)``; writes a preview each epoch.

    Args:
        patch_size: encoder patch size (pixels per mask token).
        loss_type: ``"l1"`` (paper) or ``"l2"``.
        norm_target: per-patch normalised target instead of the normalised input.
        preview: data set to draw the fixed preview samples from (None: no previews).
        mean: normalisation mean (to de-normalise previews).
        std: normalisation std.
        num_preview: images in the preview.
    """

    def __init__(
        self,
        patch_size: int,
        loss_type: str = "l1",
        norm_target: bool = False,
        preview: PretrainDataset | None = None,
        mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        std: tuple[float, ...] = (0.229, 0.224, 0.225),
        num_preview: int = 8,
    ) -> None:
        self.patch_size = patch_size
        self.loss_type = loss_type
        self.norm_target = norm_target
        self.mean, self.std = mean, std
        self._preview = _preview_batch(preview, num_preview) if preview is not None else None

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Masked reconstruction loss of ``batch = (images (B,3,H,W), mask (B,H/p,W/p))``."""
        images, mask = batch
        reconstruction = model(images, mask)
        loss = simmim_loss(
            images, reconstruction, mask, self.patch_size, self.loss_type, self.norm_target
        )
        return loss, {}

    def on_epoch_end(self, model: nn.Module, epoch: int, out_dir: Path) -> None:
        """Write ``reconstructions/epoch_NNN.png``: original | masked | reconstruction rows."""
        if self._preview is None:
            return
        images, mask = (t.to(next(model.parameters()).device) for t in self._preview)
        reconstruction = model(images, mask).float()
        path = Path(out_dir) / "reconstructions" / f"epoch_{epoch + 1:03d}.png"
        write_reconstruction_grid(
            images.float(), mask, reconstruction, self.patch_size, self.mean, self.std, path
        )


def _preview_batch(dataset: PretrainDataset, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed samples (same every epoch and after resume), not affecting the run's RNG."""
    saved = dataset.epoch
    dataset.set_epoch(_PREVIEW_EPOCH)
    try:
        # spread over the data set: built-in sets are often sorted by class
        picks = np.unique(np.linspace(0, len(dataset) - 1, min(n, len(dataset))).astype(int))
        items = [dataset[int(i)] for i in picks]
    finally:
        dataset.set_epoch(saved)
    return torch.stack([x for x, _ in items]), torch.stack([m for _, m in items])


def write_reconstruction_grid(
    images: torch.Tensor,
    mask: torch.Tensor,
    reconstruction: torch.Tensor,
    patch_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    path: Path,
) -> Path:
    """Save a PNG with one row per image: original | masked input | reconstruction.

    The reconstruction column shows the predicted pixels in the masked cells over the visible
    pixels of the input: SimMIM's loss ignores visible pixels, so predictions there are noise.

    Args:
        images: ``(B, 3, H, W)`` normalised originals.
        mask: ``(B, H/p, W/p)``, 1 = masked.
        reconstruction: ``(B, 3, H, W)`` normalised model output.
        patch_size: ``p``, pixels per mask token.
        mean: normalisation mean.
        std: normalisation std.
        path: destination PNG.
    """
    pixel_mask = mask.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)
    pixel_mask = pixel_mask.unsqueeze(1).to(images.dtype)
    original = denormalize(images, mean, std)
    masked = original * (1 - pixel_mask) + 0.5 * pixel_mask  # masked cells shown grey
    recon = original * (1 - pixel_mask) + denormalize(reconstruction, mean, std) * pixel_mask
    rows = torch.cat([original, masked, recon], dim=3)  # (B, 3, H, 3W)
    grid = torch.cat(list(rows), dim=1)  # (3, B*H, 3W)
    array = (grid.permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    image = Image.fromarray(array, mode="RGB")
    if image.height < 256:  # tiny demo images: upscale so the preview is readable
        factor = -(-256 // image.height)
        image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
