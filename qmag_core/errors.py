"""Typed errors of qmag_core.

Every error a user can trigger with bad input is a subclass of :class:`QMagError`
(itself a ``ValueError``), so callers such as the CLI and the dashboard can show its
message without a traceback.
"""

from __future__ import annotations

__all__ = [
    "QMagError",
    "DataFormatError",
    "DegenerateFitError",
    "NotFittedError",
    "InvalidEmbeddingError",
    "FMRClampWarning",
    "one_line",
    "shown",
    "MAX_MESSAGE_CHARS",
]

#: the longest message a user is shown (a whole line of a hostile file never is)
MAX_MESSAGE_CHARS = 500
#: the longest piece of a user's value quoted inside a message
MAX_QUOTED_CHARS = 60


def shown(value, limit: int = MAX_QUOTED_CHARS) -> str:
    """``repr`` of a user's value for a message, cut to ``limit`` characters with the
    length said (``'aaaa…' (10,000,000 chars)``), so a huge cell never floods a line."""
    s = str(value)
    if len(s) <= limit:
        return repr(s)
    return f"{s[:limit]!r}… ({len(s):,} chars)"


def one_line(msg, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A message folded onto one line (white space runs become one space) and cut to
    ``limit`` characters."""
    text = " ".join(str(msg).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class QMagError(ValueError):
    """Base class of all user-facing errors of qmag_core."""


class DataFormatError(QMagError):
    """A file does not have the expected format.

    The message names the file, the 1-based line number (when known) and what was
    expected.
    """

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(one_line(where + message))


class DegenerateFitError(QMagError):
    """The training data cannot support a QMagFace fit (the message says what to change)."""


class NotFittedError(QMagError, AttributeError):
    """An estimator was used before ``fit``."""


class InvalidEmbeddingError(QMagError):
    """Embeddings with zero norm or non-finite values were given to be scored."""

    def __init__(self, message: str, rows):
        self.rows = list(rows)
        super().__init__(message)


class FMRClampWarning(UserWarning):
    """The requested FMR range was narrowed to what the imposter count supports."""
