"""``pgrunbook seed``: the reference schema with deterministic synthetic data and known defects."""

from pgrunbook.seed.load import SeedReport, seed, verify_counts
from pgrunbook.seed.scales import SCALE_NAMES, SCALES

__all__ = ["SCALES", "SCALE_NAMES", "SeedReport", "seed", "verify_counts"]
