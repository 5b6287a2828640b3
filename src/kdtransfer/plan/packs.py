"""How runs group into training jobs: a pack is the runs of one run key over one block of seeds.

A job pays its process start-up (imports, the data, a CUDA context) and, on a cluster, its
sbatch round trip once per pack instead of once per run. Blocks are fixed ranges of seed
*values*, `[b * pack_size, (b + 1) * pack_size)`, holding the config's seeds that fall in them:
so adding seeds 10..19 to seeds 0..9 adds a block and leaves block 0 as it was, removing seeds
shrinks a block without changing what its runs are, and a block's name never depends on which
of its seeds the config lists. `pack_size` changes no result (a run trains bit-identically in
any pack), so it is no part of any run's identity: changing it re-plans no training.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtransfer.spec import pack_name


@dataclass(frozen=True)
class SeedBlock:
    """One block of seed values and the config's seeds in it (never empty)."""

    first: int  # the block's nominal range of seed values, first..last
    last: int
    seeds: tuple[int, ...]

    @property
    def label(self) -> str:
        """The block in rule, log and benchmark names: `seeds0to9`, or `seed3` for a one-seed block.
        From the nominal range, so the name of a block does not change when seeds are added."""
        return f"seed{self.first}" if self.first == self.last else f"seeds{self.first}to{self.last}"


def seed_blocks(seeds: list[int], pack_size: int) -> list[SeedBlock]:
    """The non-empty blocks of `seeds`, in order of their seed values."""
    by_block: dict[int, list[int]] = {}
    for seed in sorted(seeds):
        by_block.setdefault(seed // pack_size, []).append(seed)
    return [SeedBlock(b * pack_size, (b + 1) * pack_size - 1, tuple(s)) for b, s in sorted(by_block.items())]


@dataclass(frozen=True)
class Pack:
    """The runs of one run key over one block: one training job."""

    condition: str
    key: str
    block: SeedBlock

    @property
    def name(self) -> str:
        """How logs name the pack: `<run key> seeds 0-9` (kdtransfer.spec.pack_name)."""
        return pack_name(self.key, self.block.seeds)
