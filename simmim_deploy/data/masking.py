"""SimMIM random masking: whole ``mask_patch_size`` cells, upsampled to the encoder's token grid.

The mask is drawn in the data pipeline (numpy only, so it runs in CPU workers without torch) and
only ever from an explicit ``numpy.random.Generator``, so a seeded run is reproducible.
"""

from __future__ import annotations

import math

import numpy as np

from simmim_deploy.core.errors import UserError


class MaskGenerator:
    """Mask exactly ``ceil(mask_ratio * cells)`` square cells, chosen uniformly without replacement.

    Args:
        input_size: Image side in pixels (square images), e.g. 192.
        mask_patch_size: Side of one masked cell in pixels (paper default 32).
        model_patch_size: Side of one encoder token in pixels (4 for Swin, 16 for ViT/16).
        mask_ratio: Fraction of cells to mask, strictly between 0 and 1.

    Example:
        >>> gen = MaskGenerator(192, mask_patch_size=32, model_patch_size=4)
        >>> m = gen(np.random.default_rng(0))
        >>> m.shape, int(m.sum()) // (8 * 8)
        ((48, 48), 22)
    """

    def __init__(
        self,
        input_size: int,
        mask_patch_size: int = 32,
        model_patch_size: int = 4,
        mask_ratio: float = 0.6,
    ) -> None:
        for name, value in (
            ("input_size", input_size),
            ("mask_patch_size", mask_patch_size),
            ("model_patch_size", model_patch_size),
        ):
            if int(value) != value or value <= 0:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if input_size % mask_patch_size != 0:
            raise UserError(
                f"image size {input_size} is not a multiple of mask patch size {mask_patch_size}; "
                "choose --img-size and --mask-patch-size so that img % mask_patch == 0"
            )
        if mask_patch_size % model_patch_size != 0:
            raise UserError(
                f"mask patch size {mask_patch_size} is not a multiple of the model's patch size "
                f"{model_patch_size}; use a multiple of {model_patch_size} for --mask-patch-size"
            )
        if not 0.0 < mask_ratio < 1.0:
            raise UserError(f"mask ratio must be strictly between 0 and 1, got {mask_ratio}")
        self.input_size = int(input_size)
        self.mask_patch_size = int(mask_patch_size)
        self.model_patch_size = int(model_patch_size)
        self.mask_ratio = float(mask_ratio)
        self.cells_per_side = self.input_size // self.mask_patch_size
        self.scale = self.mask_patch_size // self.model_patch_size
        self.num_cells = self.cells_per_side**2
        # round up, as the paper: 0.6 * 36 cells -> 22 masked
        self.num_masked = math.ceil(self.mask_ratio * self.num_cells)

    @property
    def token_grid(self) -> int:
        """Side of the returned mask: ``input_size // model_patch_size``."""
        return self.input_size // self.model_patch_size

    def __call__(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """Draw one mask.

        Args:
            rng: Source of randomness; a fresh unseeded generator when None.

        Returns:
            int64 array ``(input_size // model_patch_size,) * 2``, 1 = masked token.
        """
        rng = np.random.default_rng() if rng is None else rng
        chosen = rng.choice(self.num_cells, size=self.num_masked, replace=False)
        cells = np.zeros(self.num_cells, dtype=np.int64)
        cells[chosen] = 1
        cells = cells.reshape(self.cells_per_side, self.cells_per_side)
        return cells.repeat(self.scale, axis=0).repeat(self.scale, axis=1)

    def __repr__(self) -> str:
        return (
            f"MaskGenerator(input_size={self.input_size}, mask_patch_size={self.mask_patch_size}, "
            f"model_patch_size={self.model_patch_size}, mask_ratio={self.mask_ratio})"
        )


PAPER_MASK_PATCH = 32  # the paper's mask cell (192 px inputs: a 6x6 grid of cells)


def default_mask_patch_size(input_size: int, model_patch_size: int) -> int:
    """The mask cell to use when none is given: the paper's 32 px, or smaller on small images.

    The largest multiple of the token side that divides ``input_size`` and is at most
    ``PAPER_MASK_PATCH`` and at most a quarter of the image side (at least a 4x4 grid of cells,
    so masking 60 % of them still leaves context): 32 at 192 or 224 px, 16 at 64 px with 8 px
    tokens, 8 at 32 px. Never smaller than one token.
    """
    limit = max(model_patch_size, min(PAPER_MASK_PATCH, input_size // 4))
    for size in range(limit - limit % model_patch_size, 0, -model_patch_size):
        if input_size % size == 0:
            return size
    return model_patch_size
