"""Stratified batches: every batch holds the classes in the dataset's proportions.

A plain shuffle leaves the class mix of each batch to chance: with 5 imbalanced
classes and batches of 100, a rare class is missing from some batches and
doubled in others, and the gradient noise that comes with it is avoidable.
:class:`StratifiedBatchSampler` builds each epoch's order so that in *every*
batch each class ``c`` has ``floor`` or ``ceil`` of ``len(batch) * p_c`` rows
(``p_c`` its share of the dataset), while each row still comes exactly once per
epoch and the order is reshuffled every epoch.

How an epoch is laid out (all vectorised; memory is a few integer arrays of the
dataset's length, so 100M labels work):

1. Every full batch gets ``floor(batch_size * p_c)`` rows of each class; the
   ``r = batch_size - sum(floor(...))`` seats left per batch go one each to
   ``r`` different classes.
2. The final short batch (``N % batch_size`` rows) is apportioned by largest
   remainder; what is left of each class (``e_c`` rows, at most one per full
   batch) fills the free seats.
3. Which batches get class ``c``'s extra rows: the free seats of all batches are
   dealt out in class order along a golden-ratio (Kronecker) ordering of the
   batches, so a rare class's rows are spread evenly over the epoch (the three
   distance theorem bounds the gaps) instead of bunched together.
4. Rows of each class are shuffled (numpy ``Generator`` seeded from
   ``(seed, epoch)``) and poured into that class's seats; each batch is then
   shuffled so that classes are interleaved.
"""

from __future__ import annotations

from collections.abc import Iterator
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from .errors import UsageError

__all__ = ["StratifiedBatchSampler"]

# Golden ratio conjugate: the rotation with the most even spacing (all partial quotients 1).
_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0
_STATE_KEYS = (
    "epoch",
    "seed",
    "batches_yielded",
    "num_replicas",
    "rank",
    "batch_size",
    "drop_last",
    "num_rows",
)


def _positive_int(name: str, value: Any) -> int:
    if not isinstance(value, Integral) or isinstance(value, bool) or value <= 0:
        raise UsageError(f"{name} should be a positive integer value, but got {name}={value!r}")
    return int(value)


def _compact_int(n: int, *, signed_16: bool = False) -> type[np.signedinteger[Any]]:
    """The smallest integer type for values below ``n`` (int16 lets numpy radix-sort)."""
    if signed_16 and n <= np.iinfo(np.int16).max:
        return np.int16
    return np.int32 if n <= np.iinfo(np.int32).max else np.int64


def _as_label_array(labels: Any) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise UsageError(
            f"labels should be a 1-D array with one label per row, but got shape {arr.shape}"
        )
    return arr


def _check_no_nan(labels: np.ndarray) -> None:
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        first = int(np.flatnonzero(np.isnan(labels))[0])
        raise UsageError(
            f"labels contain NaN (first at row {first}); quarantine those rows with `validate` "
            "first, or give them a label"
        )


def _encode(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class codes 0..C-1 per row (compact dtype), the distinct labels, and rows per class."""
    if labels.dtype.kind == "b":
        codes, classes, counts = _encode(labels.view(np.uint8))
        return codes, classes.astype(bool), counts
    if labels.dtype.kind in "iu" and labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        # Small-range integers (the usual class ids): a counting pass instead of a sort.
        if hi - lo < max(labels.size, 1 << 16) and hi <= np.iinfo(np.intp).max:
            shifted = labels.astype(np.intp) - lo
            per_value = np.bincount(shifted, minlength=hi - lo + 1)
            present = per_value > 0
            code = _compact_int(int(present.sum()), signed_16=True)
            remap = (np.cumsum(present) - 1).astype(code)
            return remap[shifted], lo + np.flatnonzero(present), per_value[present]
    _check_no_nan(labels)
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return codes.astype(_compact_int(len(classes), signed_16=True)), classes, counts


def _bin_codes(labels: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratify continuous labels by ``bins`` quantile bins (empty bins dropped)."""
    if labels.dtype.kind not in "iuf":
        raise UsageError(
            f"labels should be numeric when bins is given, but got dtype {labels.dtype}"
        )
    _check_no_nan(labels)
    if labels.size == 0:
        return np.empty(0, np.int16), np.empty(0, np.intp), np.empty(0, np.intp)
    edges = np.quantile(labels, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    codes, classes, counts = _encode(np.searchsorted(edges, labels, side="right"))
    return codes, classes, counts


def _largest_remainder(
    counts: np.ndarray, total: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Apportion ``size`` seats to classes in proportion to ``counts`` (Hamilton's method)."""
    quota = size * counts  # in units of 1/total; exact integers
    seats = quota // total
    remainder = quota % total
    short = size - int(seats.sum())
    # Random tie-break so that no class is always the one rounded up.
    favoured = np.lexsort((rng.random(len(counts)), -remainder))[:short]
    seats[favoured] += 1
    return seats


def _kronecker_rank(n: int, rng: np.random.Generator) -> np.ndarray:
    """A permutation of ``range(n)`` along which any run of positions is spread evenly."""
    points = (np.arange(n) * _GOLDEN + rng.random()) % 1.0
    rank = np.empty(n, dtype=np.intp)
    rank[np.argsort(points, kind="stable")] = np.arange(n)
    return rank


def _seat_classes(counts: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """The class of every position of the epoch, batch after batch (see the module docstring).

    Full batches hold ``floor(B * p_c)`` or that plus one rows of class ``c``; the last, short
    batch of ``R`` rows holds ``floor(R * p_c)`` or that plus one.
    """
    n_classes = len(counts)
    total = int(counts.sum())
    n_full, short = divmod(total, batch_size)
    code = _compact_int(n_classes, signed_16=True)
    classes = np.arange(n_classes, dtype=code)

    base = batch_size * counts // total  # floor(B * p_c) in every full batch
    last = _largest_remainder(counts, total, short, rng)
    extra = counts - n_full * base - last  # full batches that get one more row of class c
    free = batch_size - int(base.sum())  # seats per full batch left after the floors
    # Proven bounds (see tests): 0 <= extra <= n_full and extra.sum() == n_full * free.
    assert extra.min(initial=0) >= 0 and extra.max(initial=0) <= n_full

    seats = np.empty((n_full, batch_size), dtype=code)
    seats[:, : batch_size - free] = np.repeat(classes, base)
    # Free seats in class order, n_full per row: a class's run of extra[c] <= n_full seats
    # lands in distinct columns, i.e. in distinct batches once each column is given a batch.
    dealt = np.repeat(classes, extra).reshape(free, n_full)
    seats[:, batch_size - free :] = dealt.T[_kronecker_rank(n_full, rng)]
    return np.concatenate([seats.ravel(), np.repeat(classes, last)])


class StratifiedBatchSampler(Sampler[list[int]]):
    """Batches of row indices in which every class keeps its share of the dataset.

    For every batch and class, ``|rows of the class - len(batch) * p_c| < 1``, where
    ``p_c`` is the class's share of all rows; every row comes exactly once per epoch
    (but see ``drop_last`` and ``num_replicas``); the order is a function of
    ``(seed, epoch)`` only. Use it as ``DataLoader(dataset, batch_sampler=sampler)``,
    or take the batches as int64 numpy arrays from :meth:`iter_arrays`.

    Parameters
    ----------
    labels : array-like of shape (n_rows,)
        One label per dataset row (numpy array, torch tensor, list, pandas Series):
        class ids of any dtype, or continuous targets with ``bins``.
    batch_size : int
        Rows per batch.
    drop_last : bool, default False
        Leave out the final short batch (``n_rows % batch_size`` rows, a stratified
        sample that changes every epoch).
    seed : int, default 0
        Seed of the shuffles; must be the same on every rank.
    num_replicas : int, optional
        Number of distributed processes; default the world size of an initialised
        ``torch.distributed`` process group, else 1.
    rank : int, optional
        This process's rank; default from ``torch.distributed``, else 0.
    bins : int, optional
        Treat ``labels`` as continuous and stratify by this many quantile bins
        (``np.quantile`` edges; empty bins from ties are dropped).

    Attributes
    ----------
    classes : ndarray
        The distinct labels (with ``bins``: the non-empty bin numbers), in code order.
    class_counts : ndarray of int
        Rows per class.
    epoch : int
        Set with :meth:`set_epoch`.

    Raises
    ------
    UsageError
        A parameter out of range, labels that are not one per row, NaN labels, or
        non-numeric labels with ``bins`` (it is also a ``ValueError``).

    Notes
    -----
    **Distributed remainder policy.** The epoch's batches are laid out once, as for a
    single process, and dealt round-robin: rank ``k`` gets global batches ``k``,
    ``k + num_replicas``, ... . When the number of batches ``M`` is not a multiple of
    ``num_replicas``, the last ``M % num_replicas`` batches (the incomplete final
    round) are dropped on all ranks, so every rank yields ``M // num_replicas``
    batches, rows are disjoint across ranks and nothing is duplicated; at most
    ``num_replicas - 1`` batches' rows go unseen in an epoch, and they are different
    rows each epoch (classes are reshuffled). Every batch, on every rank, keeps the
    proportion bound above.

    **Resuming.** :meth:`state_dict` counts the batches this sampler has handed out in
    the current epoch; after :meth:`load_state_dict` the next iteration yields exactly
    the remaining ones. A DataLoader that prefetches takes batches before the model
    sees them; torchdata's ``StatefulDataLoader`` accounts for that itself.

    Memory: the labels as compact codes, the rows grouped by class, and per epoch an
    index array of ``n_rows`` (int32 below 2**31 rows); no Python lists of indices.

    Examples
    --------
    >>> sampler = StratifiedBatchSampler([0] * 6 + [1] * 3, batch_size=3, seed=1)
    >>> batches = list(sampler)
    >>> [sorted(sampler.labels_of(b).tolist()) for b in batches]
    [[0, 0, 1], [0, 0, 1], [0, 0, 1]]
    >>> sorted(i for b in batches for i in b)
    [0, 1, 2, 3, 4, 5, 6, 7, 8]
    """

    batch_size: int
    drop_last: bool
    seed: int
    num_replicas: int
    rank: int
    num_rows: int
    epoch: int
    classes: np.ndarray
    class_counts: np.ndarray

    def __init__(
        self,
        labels: Any,
        batch_size: int,
        *,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        bins: int | None = None,
    ) -> None:
        super().__init__()
        self.batch_size = _positive_int("batch_size", batch_size)
        if not isinstance(drop_last, (bool, np.bool_)):
            raise UsageError(
                f"drop_last should be a boolean value, but got drop_last={drop_last!r}"
            )
        self.drop_last = bool(drop_last)
        if not isinstance(seed, Integral) or isinstance(seed, bool) or seed < 0:
            raise UsageError(f"seed should be a non-negative integer, but got seed={seed!r}")
        self.seed = int(seed)
        self.num_replicas, self.rank = _replicas(num_replicas, rank)

        arr = _as_label_array(labels)
        if bins is None:
            codes, self.classes, counts = _encode(arr)
        else:
            codes, self.classes, counts = _bin_codes(arr, _positive_int("bins", bins))
        self.class_counts = counts.astype(np.int64)
        self.num_rows = int(arr.shape[0])
        self._codes: np.ndarray = codes
        # Row ids grouped by class, once; each epoch shuffles within the groups.
        index_type = _compact_int(max(self.num_rows - 1, 0))
        self._by_class: np.ndarray = np.argsort(codes, kind="stable").astype(index_type)
        self._starts: np.ndarray = np.concatenate([[0], np.cumsum(self.class_counts)])

        self.epoch = 0
        self._resume_at: int = 0
        self._yielded: int = 0

    # -- layout ----------------------------------------------------------------------------------
    def _global_batches(self) -> int:
        full, short = divmod(self.num_rows, self.batch_size)
        return full + (1 if short and not self.drop_last else 0)

    def __len__(self) -> int:
        """Batches this rank yields per epoch."""
        return self._global_batches() // self.num_replicas

    def epoch_order(self, epoch: int | None = None) -> np.ndarray:
        """Every row id in the epoch's order; global batch ``g`` is ``[g * B:(g + 1) * B]``.

        Parameters
        ----------
        epoch : int, optional
            Default: the current epoch.

        Returns
        -------
        ndarray of int
            A permutation of ``range(n_rows)`` (before ``drop_last`` and rank selection).
        """
        epoch = self.epoch if epoch is None else epoch
        if self.num_rows == 0:
            return self._by_class.copy()
        rng = np.random.default_rng([self.seed, epoch])
        rows = self._by_class.copy()
        for start, stop in zip(self._starts[:-1].tolist(), self._starts[1:].tolist(), strict=True):
            rng.shuffle(rows[start:stop])
        seats = _seat_classes(self.class_counts, self.batch_size, rng)
        order = np.empty_like(rows)
        # Seats grouped by class line up with rows grouped by class (same group sizes).
        order[np.argsort(seats, kind="stable")] = rows
        n_full = self.num_rows // self.batch_size
        full = order[: n_full * self.batch_size].reshape(n_full, self.batch_size)
        rng.permuted(full, axis=1, out=full)  # interleave the classes within each batch
        rng.shuffle(order[n_full * self.batch_size :])
        return order

    def labels_of(self, batch: list[int] | np.ndarray) -> np.ndarray:
        """The labels (``classes`` values) of the rows in ``batch``."""
        return self.classes[self._codes[np.asarray(batch, dtype=np.intp)]]

    # -- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[list[int]]:
        return (batch.tolist() for batch in self.iter_arrays())

    def iter_arrays(self) -> Iterator[np.ndarray]:
        """Iterate the epoch's batches as int64 numpy arrays instead of lists of ints.

        The same batches in the same order as ``iter(self)``, with the same effect on
        the sampler's state (the epoch starts and :meth:`state_dict` counts the batches
        handed out in the same way). A dataset that gathers a batch with one array index
        takes them as they are, which saves building and converting a Python list of
        ``batch_size`` ints per batch (:func:`pipeline.make_loader` does this).

        Returns
        -------
        iterator of numpy.ndarray
            Each a new 1-D int64 array of row indices.

        Examples
        --------
        >>> sampler = StratifiedBatchSampler([0, 0, 1, 1], batch_size=2)
        >>> [b.dtype.name for b in sampler.iter_arrays()]
        ['int64', 'int64']
        """
        # Not a generator itself: the epoch starts (and state_dict() resets) at the call, not
        # at the first next().
        start, self._resume_at = self._resume_at, 0
        self._yielded = start
        return self._batches(self.epoch_order(), start)

    def _batches(self, order: np.ndarray, start: int) -> Iterator[np.ndarray]:
        size = self.batch_size
        for i in range(start, len(self)):
            g = self.rank + i * self.num_replicas
            self._yielded = i + 1  # counted when handed out, before the consumer sees it
            yield order[g * size : (g + 1) * size].astype(np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from the next iteration on.

        A resume point from :meth:`load_state_dict` is kept when ``epoch`` is the
        saved epoch (the usual ``set_epoch`` call at the top of a training loop).
        """
        if not isinstance(epoch, Integral) or isinstance(epoch, bool) or epoch < 0:
            raise UsageError(f"epoch should be a non-negative integer, but got epoch={epoch!r}")
        if epoch != self.epoch:
            self._resume_at = 0
            self._yielded = 0
        self.epoch = int(epoch)

    # -- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Where this sampler stands: epoch, seed, batches handed out in the epoch, layout.

        Returns
        -------
        dict
            Keys ``epoch``, ``seed``, ``batches_yielded``, ``num_replicas``, ``rank``,
            ``batch_size``, ``drop_last``, ``num_rows``.
        """
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "batches_yielded": self._yielded,
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "num_rows": self.num_rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next iteration yields the rest of the saved epoch.

        Parameters
        ----------
        state : dict
            From :meth:`state_dict` of a sampler over the same labels and layout.

        Raises
        ------
        UsageError
            When a key is missing or the layout (rows, batch size, drop_last,
            replicas, rank) differs from this sampler's.
        """
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise UsageError(f"sampler state lacks {missing}; pass a dict from state_dict()")
        for key in ("num_rows", "batch_size", "drop_last", "num_replicas", "rank"):
            if state[key] != getattr(self, key):
                raise UsageError(
                    f"sampler state was saved with {key}={state[key]!r} but this sampler has "
                    f"{key}={getattr(self, key)!r}; resume with the same labels and settings"
                )
        done = int(state["batches_yielded"])
        if not 0 <= done <= len(self):
            raise UsageError(
                f"sampler state has batches_yielded={done}, outside [0, {len(self)}] "
                "for this layout; resume with the same labels and settings"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._resume_at = self._yielded = done


def _replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Validate ``num_replicas``/``rank``, defaulting to the process group's (or 1 and 0)."""
    dist = torch.distributed
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    num_replicas = _positive_int("num_replicas", num_replicas)
    if not isinstance(rank, Integral) or isinstance(rank, bool) or not 0 <= rank < num_replicas:
        raise UsageError(
            f"Invalid rank {rank!r}, rank should be in the interval [0, {num_replicas - 1}]"
        )
    return num_replicas, int(rank)
