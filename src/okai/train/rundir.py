"""The layout of a run directory `runs/<run-id>/`, shared by launcher and workers.

job.json             the job, canonical JSON (its SHA-256 is the job digest)
model.safetensors    the trained model (rank 0)
metrics.jsonl        one JSON object per step and per epoch (rank 0)
training-curve.png   loss and accuracy (rank 0)
receipt.json         digests, versions, host, times; written last (rank 0)
checkpoints/         step-<N>/state.pt and `latest` (each node's local rank 0)
errors/              rank-<N>.json: what stopped a rank; fatal.json: no restart helps
logs/                torchrun.log and torchrun's per-attempt, per-rank stdout/stderr
"""

from __future__ import annotations

JOB_FILE = "job.json"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "training-curve.png"
RECEIPT_FILE = "receipt.json"
CHECKPOINTS_DIR = "checkpoints"
ERRORS_DIR = "errors"
FATAL_FILE = "fatal.json"
LOGS_DIR = "logs"
STARTED_AT_ENV = "OKAI_RUN_STARTED_AT"
"""Set by the launcher: when the run started, for the receipt."""
PROVIDER_ENV = "OKAI_PROVIDER"
"""Set by the node agent: which provider ran the nodes (local, fluence), for the receipt."""
