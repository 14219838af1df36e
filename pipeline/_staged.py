"""What every staged output shares: a local file or an object in a store (:mod:`._atomic`)."""

from __future__ import annotations

from types import TracebackType
from typing import Any


class Staged:
    """The steps every staged output shares: :meth:`commit` and the ``with`` form.

    Subclasses write to :meth:`sink` and define ``sync`` (the temporary copy is
    complete), ``publish`` (it replaces the final one) and ``discard``. Leaving a
    ``with`` block commits on success and discards on an exception, or when the
    commit itself fails.
    """

    def sync(self) -> None:
        raise NotImplementedError

    def publish(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        """:meth:`sync`, then :meth:`publish`."""
        self.sync()
        self.publish()

    def __enter__(self) -> Any:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.discard()
            return
        try:
            self.commit()
        except BaseException:
            self.discard()
            raise
