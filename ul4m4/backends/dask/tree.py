"""The pairwise tree over row blocks: every sum over blocks uses its one association.

So sums depend on the row chunks only, never on the workers or the scheduling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dask.delayed import Delayed, delayed

__all__ = ["add", "add_into", "delayed_sum", "fold", "node_sum", "owned_nodes", "pairwise_sum",
           "root_size"]


def add(left: Any, right: Any, *, into: bool = False) -> Any:
    """``left + right`` for equally shaped nested tuples/lists of arrays.

    With ``into``, ``right`` is added into ``left``'s arrays (the caller owns
    them): a pass then allocates no new (k, d) sums per node, which matters on
    workers whose allocator hands every large block back to the system.
    """
    if isinstance(left, tuple | list):
        return type(left)(add(a, b, into=into) for a, b in zip(left, right, strict=True))
    if into:
        left += right
        return left
    return left + right


def add_into(left: Any, right: Any) -> Any:
    """``right`` added into ``left`` (owned by the caller), which is returned."""
    return add(left, right, into=True)


def fold(lo: int, size: int, n: int, value_of: Callable[[int, int], Any],
          combine: Callable[[Any, Any], Any]) -> Any:
    """The value of node ``(lo, size)`` of the pairwise tree over ``n`` per-block parts.

    The tree's nodes are the aligned power-of-two runs of blocks ``[lo, lo +
    size)`` (cut at ``n``); a node is its left child plus its right one (or its
    left one alone past ``n``). ``value_of(lo, size)`` gives a node's value when
    it is known (every leaf must be), None otherwise. Every sum over blocks uses
    this one association, wherever its nodes are computed, so results depend on
    the row chunks only, never on the workers or the scheduling.
    """
    known = value_of(lo, size)
    if known is not None:
        return known
    half = size // 2
    left = fold(lo, half, n, value_of, combine)
    if lo + half >= n:
        return left
    return combine(left, fold(lo + half, half, n, value_of, combine))


def root_size(n: int) -> int:
    """The size of the pairwise tree's root over ``n`` parts."""
    return 1 << max(0, (n - 1).bit_length())


def node_sum(lo: int, size: int, n: int, leaves: Sequence[Any] | Mapping[int, Any],
              add: Callable[[Any, Any], Any]) -> Any:
    """Node ``(lo, size)`` of the pairwise tree over ``n`` blocks, from its blocks' ``leaves``."""
    return fold(lo, size, n, lambda at, width: leaves[at] if width == 1 else None, add)


def pairwise_sum(parts: list[Any], add: Callable[[Any, Any], Any] = add) -> Any:
    """``parts`` summed along the pairwise tree (delayed parts give a delayed sum)."""
    return node_sum(0, root_size(len(parts)), len(parts), parts, add)


def delayed_sum(parts: list[Delayed]) -> Delayed:
    """Per-block partial results summed along the pairwise tree, one task per node."""
    return pairwise_sum(parts, lambda left, right: delayed(add)(left, right))


def owned_nodes(held: Sequence[int], n: int) -> list[tuple[int, int]]:
    """The largest nodes of the pairwise tree over ``n`` blocks whose blocks are all ``held``."""
    held = set(held)
    found = []

    def visit(lo: int, size: int) -> None:
        if all(i in held for i in range(lo, min(lo + size, n))):
            found.append((lo, size))
        elif size > 1:
            visit(lo, size // 2)
            if lo + size // 2 < n:
                visit(lo + size // 2, size // 2)

    visit(0, root_size(n))
    return found
