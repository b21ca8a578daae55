"""`python -m okai.train.worker`: one rank of a run, as torchrun starts it.

Build, run, close: the worker reads the canonical job from the run directory,
joins the process group, plans its data (which then streams in, verified), trains, and (rank 0)
writes the model, the curve and the receipt; the process group is destroyed
on every path.

An error that a restart cannot cure (a bad job, a corrupted shard: usage and
verification errors) is recorded in `errors/fatal.json`; workers that torchrun
restarts afterwards see it and exit at once, so the run fails in seconds
instead of repeating the same failure. Every failing rank records what stopped
it in `errors/rank-<N>.json`, which the launcher turns back into the error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from okai import collector
from okai.atomic import write_atomically
from okai.documents import read_document
from okai.errors import DocumentError, IntegrityError, OkaiError, UsageError, VerificationError
from okai.train.rundir import (
    ERRORS_DIR,
    FATAL_FILE,
    JOB_FILE,
    METRICS_FILE,
    PROVIDER_ENV,
    STARTED_AT_ENV,
)

log = logging.getLogger("okai.train.worker")

FETCH_WORKERS = 4
PROCESS_GROUP_TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class RankEnv:
    """What torchrun tells a worker through its environment."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    attempt: int

    @classmethod
    def from_environ(cls) -> RankEnv:
        env = os.environ
        return cls(
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", "1")),
            attempt=int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
        )

    @property
    def nodes(self) -> int:
        return max(1, self.world_size // self.local_world_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="okai.train.worker")
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--source", required=True, help="local:<dir> or walrus:<network>")
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args(argv)
    env = RankEnv.from_environ()
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s rank {env.rank}: %(message)s", stream=sys.stderr
    )
    fatal = args.run_dir / ERRORS_DIR / FATAL_FILE
    if fatal.exists():
        # Checked before importing torch: a doomed restart should cost a fraction of a second.
        log.info("not starting: an earlier attempt met an error a restart cannot fix (%s)", fatal)
        return int(read_document(fatal, "json").get("exitCode", 1))
    try:
        _run(args.run_dir, args.source, args.run_id, env)
    except OkaiError as exc:
        _record(args.run_dir, env, exc)
        log.error("%s: %s", type(exc).__name__, exc)
        return int(exc.exit_code)
    except Exception as exc:
        _record(args.run_dir, env, exc)
        raise
    return 0


def _run(run_dir: Path, source_arg: str, run_id: str, env: RankEnv) -> None:
    # Importing torch (and torch._dynamo, which use_deterministic_algorithms imports) leaves
    # ~300,000 objects that live as long as this process: the collector would walk them
    # during the imports and on every full pass after them, finding nothing.
    with collector.paused_then_frozen():
        import torch
        import torch.distributed as dist

        from okai.digest import Digest
        from okai.manifest import BlobRef, JobSpec, ManifestRef
        from okai.train.checkpoint import Checkpointer
        from okai.train.context import Context
        from okai.train.data import SourceSpec, open_source
        from okai.train.entrypoint import training_function
        from okai.train.errors import EntrypointError
        from okai.train.loader import RankStream, fetch
        from okai.train.metrics import MetricsLog
        from okai.train.plan import DataPlan, partition
        from okai.train.receipt import run_image, utc_now

        started_at = os.environ.get(STARTED_AT_ENV) or utc_now()
        job = JobSpec.load(run_dir / JOB_FILE)
        if job.deterministic:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
            # Intra-op thread count can change float reduction order; fix it.
            torch.set_num_threads(1)
    if torch.cuda.is_available():
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device = torch.device("cpu")
        backend = "gloo"
    # Measured before training so that a malformed identity file stops the run early.
    image = run_image() if env.rank == 0 else None
    dist.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT)
    try:
        fetch_began = time.perf_counter()
        # Open for the whole run: shards stream in through the source while training.
        with open_source(SourceSpec.parse(source_arg)) as source:
            train_fn, code = training_function(job, source)
            manifests = [
                source.manifest(ref) for ref in job.datasets if isinstance(ref, ManifestRef)
            ]
            blobs = [
                (ref.blob_id, ref.path, Digest(ref.sha256))
                for ref in job.datasets
                if isinstance(ref, BlobRef) and ref.sha256 is not None
            ]
            plan = DataPlan.build(manifests, blobs)
            if not plan.train:
                raise UsageError(
                    "the job's datasets hold no training files (every file is under test/)"
                )
            train_files = fetch(
                source, partition(plan.train, env.rank, env.world_size), workers=FETCH_WORKERS
            )
            test_files = (
                fetch(source, partition(plan.test, env.rank, env.world_size), workers=FETCH_WORKERS)
                if plan.test
                else None
            )
            fetch_seconds = time.perf_counter() - fetch_began
            log.info(
                "%d training files (%d samples) and %d held-out files; their shards stream, "
                "verified, as training goes",
                len(train_files),
                sum(ready.share for ready in train_files),
                len(test_files or ()),
            )
            ctx = Context(
                job=job,
                run_dir=run_dir,
                rank=env.rank,
                world_size=env.world_size,
                local_rank=env.local_rank,
                device=device,
                train_data=RankStream(train_files, seed=job.seed, rank=env.rank),
                test_data=None
                if test_files is None
                else RankStream(test_files, seed=job.seed, rank=env.rank),
                metrics=MetricsLog(run_dir / METRICS_FILE, enabled=env.rank == 0),
                checkpoints=Checkpointer(
                    run_dir, job_digest=job.digest(), writer=env.local_rank == 0
                ),
                fetch_seconds=fetch_seconds,
                labels=plan.labels,
            )
            torch.manual_seed(job.seed)
            model = train_fn(ctx)
            if not isinstance(model, torch.nn.Module):
                raise EntrypointError(
                    f"train(ctx) returned {type(model).__name__}; return the trained torch.nn.Module"
                )
            ctx.metrics.close()
            if env.rank == 0:
                from okai.train.outputs import RunFacts, write_outputs

                facts = RunFacts(
                    run_id=run_id,
                    job=job,
                    code=code,
                    image=image,
                    provider=os.environ.get(PROVIDER_ENV, "local"),
                    world_size=env.world_size,
                    nodes=env.nodes,
                    started_at=started_at,
                )
                write_outputs(run_dir, model, ctx.summary, facts)
            dist.barrier()
    finally:
        dist.destroy_process_group()


def _record(run_dir: Path, env: RankEnv, exc: BaseException) -> None:
    """Write what stopped this rank where the launcher looks for it."""
    record: dict[str, Any] = {
        "rank": env.rank,
        "attempt": env.attempt,
        "type": type(exc).__name__,
        "message": exc.message if isinstance(exc, OkaiError) else str(exc),
        "exitCode": int(exc.exit_code) if isinstance(exc, OkaiError) else 1,
        "okai": isinstance(exc, OkaiError),
        "fatal": isinstance(exc, (UsageError, VerificationError)),
    }
    if isinstance(exc, OkaiError) and exc.hint:
        record["hint"] = exc.hint
    if isinstance(exc, IntegrityError):
        record["integrity"] = {"what": exc.what, "expected": exc.expected, "actual": exc.actual}
    if isinstance(exc, DocumentError):
        record["document"] = {"source": exc.source, "field": exc.field, "problem": exc.problem}
    folder = run_dir / ERRORS_DIR
    text = json.dumps(record, indent=2)
    write_atomically(folder / f"rank-{env.rank}.json", text)
    if record["fatal"]:
        # Ranks of several nodes may race here: each renames a whole file of its own.
        write_atomically(folder / FATAL_FILE, text)


if __name__ == "__main__":
    sys.exit(main())
