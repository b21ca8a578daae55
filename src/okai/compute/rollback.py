"""Undoing a half-made cluster, the same way whichever part made it."""

from __future__ import annotations

from collections.abc import Callable

from okai.compute import interrupt
from okai.compute.state import ClusterState, ClusterStatus
from okai.errors import OkaiError


def failure_reason(exc: BaseException) -> str:
    """What went wrong, in a few words: an okai error's message, else the exception's type."""
    if isinstance(exc, OkaiError):
        return exc.message
    if isinstance(exc, interrupt.Interrupted):
        return str(exc)
    return type(exc).__name__


def down_command(name: str) -> str:
    return f"okai cluster down {name}"


def roll_back(
    state: ClusterState,
    exc: BaseException,
    undo: Callable[[], object],
    report: Callable[[str], None],
) -> None:
    """Record why `state` stopped, run `undo`; if that fails too, say on `exc` how to finish.

    Signals during `undo` stop it between two calls (`okai.compute.interrupt`).
    `exc` is re-raised by the caller, so the note (and, on an okai error, the
    hint) is what the user sees about the resources left behind.
    """
    state.set_status(ClusterStatus.FAILED, error=failure_reason(exc))
    report(f"rolling back cluster {state.name}: {failure_reason(exc)}")
    try:
        with interrupt.rolling_back():
            undo()
    except BaseException as cleanup:
        note = (
            f"rolling back left resources behind ({failure_reason(cleanup)}); "
            f"run `{down_command(state.name)}` to remove them"
        )
        if isinstance(exc, OkaiError):
            exc.hint = note if exc.hint is None else f"{exc.hint}\n{note}"
        exc.add_note(note)
