"""The SimMIM pre-training data set: ``(image, mask)`` pairs, mask drawn in the data pipeline.

Every sample's randomness (crop, flip, mask) comes from one generator seeded by
``(seed, epoch, index)``, so the same sample is produced in any DataLoader worker, on any rank,
and after a resume. Bad files are skipped: recorded in a :class:`SkipLog` and replaced by the
next readable image (deterministically), so a run never crashes on a broken file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from simmim_deploy.core.errors import UserError
from simmim_deploy.data.builtin import BuiltinData
from simmim_deploy.data.images import BadImageError, SkipLog, load_rgb
from simmim_deploy.data.masking import MaskGenerator
from simmim_deploy.data.transforms import PretrainTransform


def prescan_images(paths: Sequence[Path], skip_log: SkipLog | None) -> list[Path]:
    """Drop files that are empty or whose header is not an image (cheap: no pixel decoding).

    Truncated or corrupt pixel data passes this check and is caught when decoded.
    """
    good = []
    for path in paths:
        reason = None
        try:
            if path.stat().st_size == 0:
                reason = "empty file (0 bytes)"
            else:
                with Image.open(path):
                    pass
        except Exception as exc:  # noqa: BLE001 - any failure to identify is a bad file
            reason = f"not an image Pillow can read ({type(exc).__name__})"
        if reason is None:
            good.append(path)
        elif skip_log is not None:
            skip_log.record(path, reason)
    return good


class PretrainDataset(Dataset):
    """SimMIM pre-training samples from image files or built-in data.

    Args:
        source: image paths (e.g. from :func:`~simmim_deploy.data.images.find_images`) or
            :class:`~simmim_deploy.data.builtin.BuiltinData`.
        transform: the pre-training transform.
        mask_generator: draws the token-grid mask.
        seed: base seed of the per-sample generators.
        skip_log: where unreadable files are recorded (None: not recorded).

    Items:
        ``(image, mask)``: ``(3, H, W)`` float32 normalised image and ``(H/p, W/p)`` int64 mask,
        1 = masked, ``p`` the encoder patch size.
    """

    def __init__(
        self,
        source: Sequence[Path] | BuiltinData,
        transform: PretrainTransform,
        mask_generator: MaskGenerator,
        seed: int = 0,
        skip_log: SkipLog | None = None,
    ) -> None:
        if isinstance(source, BuiltinData):
            self.images: list[Image.Image] | None = list(source.images)
            self.paths: list[Path] = []
        else:
            self.images = None
            self.paths = prescan_images(list(source), skip_log)
        if len(self) == 0:
            raise _nothing_readable(skip_log)
        self.transform = transform
        self.mask_generator = mask_generator
        self.seed = int(seed)
        self.epoch = 0
        self.skip_log = skip_log

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws ``__getitem__`` reproduces."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The generator of sample ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def load(self, index: int) -> Image.Image:
        """RGB image ``index``; an unreadable file is recorded and the next readable one used."""
        if self.images is not None:
            return self.images[index]
        n = len(self.paths)
        for offset in range(n):
            path = self.paths[(index + offset) % n]
            try:
                return load_rgb(path)
            except BadImageError as exc:
                if self.skip_log is not None:
                    self.skip_log.record(path, str(exc).removeprefix(f"{path}: "))
        raise _nothing_readable(self.skip_log)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        image = self.transform(self.load(index), rng)
        mask = torch.from_numpy(self.mask_generator(rng))
        return image, mask


def _nothing_readable(skip_log: SkipLog | None) -> UserError:
    if skip_log is None:
        return UserError("no readable image in the data (every file was skipped)")
    return skip_log.nothing_readable("the data")
