"""How a cluster's job fails: a node reported a failure, or stopped answering."""

from __future__ import annotations

from okai.compute.node.status import ErrorInfo
from okai.errors import OperationalError


class JobFailed(OperationalError):
    """A node reported that the job failed; its error (and exit code) is carried over."""

    def __init__(self, rank: int, error: ErrorInfo, cluster: str) -> None:
        hint = (
            f"`okai cluster logs {cluster} --node {rank}` shows what happened; "
            f"`okai cluster down {cluster}` removes the cluster"
        )
        if error.hint:
            hint = f"{error.hint}\n{hint}"
        super().__init__(f"node {rank} failed: {error.message}", hint=hint)
        self.rank = rank
        self.error = error
        self.exit_code = error.exit_code  # type: ignore[assignment]


class NodeUnreachable(OperationalError):
    """A node stopped answering on its control channel."""
