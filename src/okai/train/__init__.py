"""Distributed training: job files, the torchrun launcher, verified data, receipts.

The modules exported here do not import torch, so the CLI stays quick; the
training side (`okai.train.context.Context`, the loop, the worker) is imported
by the worker processes that torchrun starts.
"""

from okai.provenance.receipt import Receipt
from okai.train.builtins import BUILTINS, check_job
from okai.train.data import (
    LocalShardSource,
    ShardSource,
    SourceSpec,
    WalrusShardSource,
    stage_inputs,
)
from okai.train.demo import digits_files, digits_job
from okai.train.errors import BlobUnavailable, EntrypointError, TrainingFailed
from okai.train.job import job_from_toml, job_to_toml, load_job
from okai.train.launch import LaunchOptions, Progress, Rendezvous, RunResult, launch, train
from okai.train.plan import DataPlan, partition

__all__ = [
    "BUILTINS",
    "BlobUnavailable",
    "DataPlan",
    "EntrypointError",
    "LaunchOptions",
    "LocalShardSource",
    "Progress",
    "Receipt",
    "Rendezvous",
    "RunResult",
    "ShardSource",
    "SourceSpec",
    "TrainingFailed",
    "WalrusShardSource",
    "check_job",
    "digits_files",
    "digits_job",
    "job_from_toml",
    "job_to_toml",
    "launch",
    "load_job",
    "partition",
    "stage_inputs",
    "train",
]
