"""Undoing a half-made cluster, the same way whichever part made it."""

from __future__ import annotations

from collections.abc import Callable

from okai.errors import OkaiError


def failure_reason(exc: BaseException) -> str:
    """What went wrong, in a few words: an okai error's message, else the exception's type."""
    return exc.message if isinstance(exc, OkaiError) else type(exc).__name__


def roll_back(
    name: str, exc: BaseException, undo: Callable[[], object], report: Callable[[str], None]
) -> None:
    """Run `undo` for cluster `name` after `exc`; if that fails too, say on `exc` how to finish.

    `exc` is re-raised by the caller, so the note (and, on an okai error, the hint) is
    what the user sees about the resources left behind.
    """
    report(f"rolling back cluster {name}: {failure_reason(exc)}")
    try:
        undo()
    except BaseException as cleanup:
        note = (
            f"rolling back left resources behind ({cleanup}); "
            f"run `okai cluster down {name}` to remove them"
        )
        if isinstance(exc, OkaiError):
            exc.hint = note if exc.hint is None else f"{exc.hint}\n{note}"
        exc.add_note(note)
