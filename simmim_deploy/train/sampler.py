"""Data order that can resume in the middle of an epoch.

The order of epoch ``e`` is a permutation seeded by ``(seed, e)`` (torch's
:class:`~torch.utils.data.DistributedSampler` with ``set_epoch``), sharded over ranks. Resuming
after ``k`` optimizer steps skips the first ``k * accumulation * batch_size`` indices of this
rank's shard without loading them, so the remaining batches are exactly those an uninterrupted
run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler


class ResumableSampler(DistributedSampler):
    """:class:`DistributedSampler` (also used with one process) that can start mid-epoch.

    Args:
        dataset: anything with ``len``.
        num_replicas: world size.
        rank: this process's rank.
        shuffle: permute each epoch (seeded by ``seed + epoch``).
        seed: base seed, identical on every rank.
        drop_last: drop the tail that does not divide evenly over ranks.
    """

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self.start_index = 0

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Select epoch ``epoch``'s order and skip its first ``start_index`` indices (this rank)."""
        super().set_epoch(epoch)
        self.start_index = start_index

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start_index :])

    def __len__(self) -> int:
        return max(self.num_samples - self.start_index, 0)
