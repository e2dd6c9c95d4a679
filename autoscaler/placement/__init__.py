"""Stage 4, placement. Until the full placement (MIG layouts, gang packing) lands, `aggregate` checks that the
GPUs the targets need fit each pool's largest size."""

from autoscaler.placement.aggregate import PoolDemand, PoolFit, fit_pools

__all__ = ["PoolDemand", "PoolFit", "fit_pools"]
