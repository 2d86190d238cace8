"""The plan layer: the DAG of a workstream set (``dag``) and scope-conflict prediction
(``overlap``). Imports only ``uet_git.spec``."""

from uet_git.plan.dag import Plan, PlanError, build_plan, estimates
from uet_git.plan.overlap import predict_conflicts

__all__ = ["Plan", "PlanError", "build_plan", "estimates", "predict_conflicts"]
