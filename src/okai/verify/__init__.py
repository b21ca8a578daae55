"""Verification: the checks of docs/verification.md, shared by `okai verify` and the page.

`rules.evaluate` is the pure judgement over what was observed (the page runs the same
rules in JavaScript); `driver.verify_model` observes: it reads the registry and Walrus,
re-trains when asked, and returns a `VerifyReport`.
"""

from okai.verify.checks import CHECK_IDS, CHECKS, Check, Options, requested_checks
from okai.verify.driver import ModelTarget, Progress, Silent, verify_model
from okai.verify.policy import TrustPolicy
from okai.verify.report import REPORT_SCHEMA, VerifyReport, WitnessOutcome
from okai.verify.reproduce import Reproducer, TrainReproducer
from okai.verify.rules import Evaluation, evaluate

__all__ = [
    "CHECKS",
    "CHECK_IDS",
    "REPORT_SCHEMA",
    "Check",
    "Evaluation",
    "ModelTarget",
    "Options",
    "Progress",
    "Reproducer",
    "Silent",
    "TrainReproducer",
    "TrustPolicy",
    "VerifyReport",
    "WitnessOutcome",
    "evaluate",
    "requested_checks",
    "verify_model",
]
