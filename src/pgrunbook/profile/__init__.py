"""Profiles: the app-specific half of the runbook (the Ali backend's is built in)."""

from pgrunbook.profile.load import load_profile
from pgrunbook.profile.model import ConstraintSpec, Predicate, Profile, RetentionPolicy

__all__ = ["ConstraintSpec", "Predicate", "Profile", "RetentionPolicy", "load_profile"]
