"""Why a run ended: a kind (an enum) with the message that records store and the window shows.

``RunEnd`` is a ``str`` (its message: "finished", "stopped by the user", "loss became
nan at step 12"), so records, signals and status lines carry it as text, unchanged;
``kind`` says what happened without reading the text. ``RunEnd.parse`` recovers
it from text (a record read back, a queued Qt signal that passes plain str).
"""
from __future__ import annotations

import re
from enum import Enum


class EndKind(Enum):
    FINISHED = "finished"        # the steps asked for are done
    STOPPED = "stopped"          # the user (or a caller) stopped it
    NON_FINITE = "non_finite"    # the loss became NaN or infinite
    FAILED = "failed"            # an error ended it (the message says which)


class RunEnd(str):
    """The message, with ``kind``, and ``step`` where the end is tied to one."""

    kind: EndKind
    step: int | None

    def __new__(cls, message: str, kind: EndKind | str, step: int | None = None):
        obj = super().__new__(cls, message)
        obj.kind, obj.step = EndKind(kind), step
        return obj

    def __reduce__(self):   # across processes, as itself
        return (RunEnd, (str(self), self.kind.value, self.step))

    @property
    def early(self) -> bool:
        """Whether the run ended before its steps were done."""
        return self.kind is not EndKind.FINISHED

    @classmethod
    def non_finite(cls, loss: float, step: int) -> RunEnd:
        return cls(f"loss became {loss} at step {step}", EndKind.NON_FINITE, step)

    @classmethod
    def failed(cls, message: str) -> RunEnd:
        return cls(message, EndKind.FAILED)

    @classmethod
    def parse(cls, text) -> RunEnd | None:
        """The RunEnd of a stored message (None for none)."""
        if isinstance(text, RunEnd) or text is None:
            return text
        text = str(text)
        if not text:
            return None
        if text.startswith(FINISHED):
            return cls(text, EndKind.FINISHED)
        if text == STOPPED:
            return STOPPED
        m = re.match(r"loss became \S+ at step (\d+)", text)
        if m:
            return cls(text, EndKind.NON_FINITE, int(m.group(1)))
        return cls(text, EndKind.FAILED)


FINISHED = RunEnd("finished", EndKind.FINISHED)
STOPPED = RunEnd("stopped by the user", EndKind.STOPPED)
