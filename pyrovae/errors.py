"""The errors pyrovae raises for a user's mistake or a run that cannot go on.

Each is also a subclass of the built-in exception a caller would catch for it (a :class:`CheckpointError` is a
``ValueError``, :class:`TrainingDiverged` a ``FloatingPointError``), so code written against the built-ins keeps
working. The command line prints their messages as ``pyrovae: error: <message>``, without a traceback
(``--debug`` or ``PYROVAE_DEBUG=1`` shows it).
"""

from __future__ import annotations


class PyrovaeError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class CheckpointError(PyrovaeError, ValueError):
    """A checkpoint file is corrupt, of another format, malformed, or does not fit the model."""


class RunFolderError(PyrovaeError, RuntimeError):
    """A run folder (``out_dir``, ``--out``) is in use by another run, or holds a run that would be overwritten."""


class TrainingDiverged(PyrovaeError, FloatingPointError):
    """Training diverged: a non-finite loss or parameter, or an ELBO far below the untrained model's. The message
    names the epoch and the checkpoints that were kept."""
