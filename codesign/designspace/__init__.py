"""The design space and its hardware estimate, below both `compress` and `search`.

Why a package of its own: `codesign compress` (bit allocation under a LUT/BRAM/FPS budget) and
the co-design search ask the same question of the same cost model -- "what does this per-layer
plan cost at the target FPS?" -- and imports go upward only, so the answer cannot live in
`search`. `space` names a design (Candidate, SearchSpace, plan hashing); `estimate` folds and
costs it with the compiler's own functions (HwEstimator) and says how tightly it binds.
"""

from codesign.designspace.estimate import RESOURCES, THROUGHPUT_PENALTY, HwEstimate, HwEstimator, binding
from codesign.designspace.space import Candidate, SearchSpace, plan_hash

__all__ = ["RESOURCES", "THROUGHPUT_PENALTY", "HwEstimate", "HwEstimator", "binding", "Candidate", "SearchSpace",
           "plan_hash"]
