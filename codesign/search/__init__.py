"""The co-design loop: relevance-guided search with resource/throughput feedback.

Public API: `SearchSpace`/`Candidate` and `HwEstimator` (they live in `codesign.designspace`,
below `compress` as well), `RelevanceFeedback` (move rules), strategies (`run_relevance`, `run_optuna`, `run_uniform`,
`run_random`), `prepare`/`run_trials`/`finalize` (loop), `pareto_front`.
"""

from codesign.search.feedback import InfeasibleBudgetError, RelevanceFeedback, check_achievable
from codesign.designspace.estimate import HwEstimate, HwEstimator
from codesign.search.pareto import pareto_front
from codesign.designspace.space import Candidate, SearchSpace, plan_hash

__all__ = ["Candidate", "SearchSpace", "plan_hash", "HwEstimate", "HwEstimator", "RelevanceFeedback",
           "InfeasibleBudgetError", "check_achievable", "pareto_front"]
