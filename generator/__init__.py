"""katib-nas generator: validates values per cluster profile and drives helm."""

from __future__ import annotations

from .errors import GeneratorError, HelmError, ImportExperimentError, Problem, ProfileError, ValuesError
from .models import ChartValues, ClusterProfile, SearchSpace
from .profiles import load_profile
from .validate import Report, validate_data, validate_file

__all__ = [
    "ChartValues",
    "ClusterProfile",
    "GeneratorError",
    "HelmError",
    "ImportExperimentError",
    "Problem",
    "ProfileError",
    "Report",
    "SearchSpace",
    "ValuesError",
    "load_profile",
    "validate_data",
    "validate_file",
]
