"""MI estimators, critics, and the local MI / global MI / TVDIM objectives."""

from radmi.losses.critics import BilinearCritic, ConcatMLPCritic, Critic, DotCritic, build_critic
from radmi.losses.estimators import (
    MIOutput,
    dv_bound,
    get_estimator,
    infonce_bound,
    jsd_bound,
    study_negatives_mask,
)
from radmi.losses.global_mi import GlobalMILoss
from radmi.losses.local_mi import LocalMILoss, aggregate_regions
from radmi.losses.objectives import PretrainObjective
from radmi.losses.tvdim import TVDIMLoss, margin_ranking_loss

__all__ = [
    "BilinearCritic",
    "ConcatMLPCritic",
    "Critic",
    "DotCritic",
    "GlobalMILoss",
    "LocalMILoss",
    "MIOutput",
    "PretrainObjective",
    "TVDIMLoss",
    "aggregate_regions",
    "build_critic",
    "dv_bound",
    "get_estimator",
    "infonce_bound",
    "jsd_bound",
    "margin_ranking_loss",
    "study_negatives_mask",
]
