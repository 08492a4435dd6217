"""The actor chains one actor process takes part in, as the driver set them up.

The driver sends each actor of a chain one CHAIN_SETUP message with the whole
chain (see :mod:`sluice.executor.chains`); a relayed value then needs only the
chain's id and the hop's index to find what to call and where the result goes.

A hop is ``(address, method, args_blob, name)``: the chain socket address of the
actor process that runs it, the method, its arguments packed by
:func:`~sluice.executor.chains.pack_hop_args` (one slot for the chained value) and
the call's name (for errors).
"""

from __future__ import annotations

import pickle
from typing import Any

from sluice.executor.calls import decode_call

Hop = tuple[str, str, bytes, str]
"""One call of a chain: ``(actor process address, method, args blob, name)``."""


class ChainTable:
    """Chain id -> the chain's hops, for the chains this process has been told of.

    >>> table = ChainTable()
    >>> table.set(7, (("\\0a", "inc", b"", "A.inc"), ("\\0b", "inc", b"", "B.inc")))
    >>> table.hop(7, 1)[0], table.next_address(7, 0), table.is_last(7, 1)
    ('\\x00b', '\\x00b', True)
    >>> table.forget([7]); 7 in table
    False
    """

    __slots__ = ("chains", "templates")

    def __init__(self) -> None:
        self.chains: dict[int, tuple[Hop, ...]] = {}
        # (chain id, hop index) -> (args, kwargs, slot) decoded once, for hops whose
        # arguments are all immutable plain values (else None: decoded per call, so a
        # method that changes an argument never sees the change in the next execute)
        self.templates: dict[tuple[int, int], tuple | None] = {}

    def __contains__(self, chain_id: int) -> bool:
        return chain_id in self.chains

    def set(self, chain_id: int, hops: tuple[Hop, ...]) -> None:
        """Learn chain ``chain_id`` (an id is set up once; a new set-up gets a new id)."""
        self.chains[chain_id] = hops

    def forget(self, chain_ids: list[int]) -> None:
        """Drop chains the driver will not run again (an actor of theirs was replaced)."""
        for chain_id in chain_ids:
            hops = self.chains.pop(chain_id, None)
            for index in range(len(hops or ())):
                self.templates.pop((chain_id, index), None)

    def hop(self, chain_id: int, index: int) -> Hop:
        """Hop ``index`` of chain ``chain_id`` (KeyError when the chain is unknown)."""
        return self.chains[chain_id][index]

    def next_address(self, chain_id: int, index: int) -> str:
        """Where the value of hop ``index`` goes: the next hop's actor process."""
        return self.chains[chain_id][index + 1][0]

    def is_last(self, chain_id: int, index: int) -> bool:
        """Whether hop ``index`` ends the chain (its value goes to the driver)."""
        return index + 1 == len(self.chains[chain_id])

    def arguments(self, chain_id: int, index: int, value: Any) -> tuple[list, dict]:
        """Hop ``index``'s set-up arguments with the chained ``value`` in its slot."""
        key = (chain_id, index)
        try:
            template = self.templates[key]
        except KeyError:
            template = self.templates[key] = _template(self.chains[chain_id][index][2])
        if template is None:
            return decode_call(self.chains[chain_id][index][2], [value])
        args, kwargs, slot = template
        if type(slot) is int:
            args = list(args)
            args[slot] = value
        else:
            kwargs = dict(kwargs)
            kwargs[slot] = value
        return args, kwargs


_IMMUTABLE = frozenset({int, float, complex, bool, str, bytes, type(None)})


def _template(blob: bytes) -> tuple | None:
    """``(args, kwargs, slot)`` of a packed hop when every argument is immutable, else None."""
    args, kwargs, slots = pickle.loads(blob)
    kwargs = kwargs or {}
    if len(slots) != 1 or not all(type(v) in _IMMUTABLE for v in (*args, *kwargs.values())):
        return None
    return tuple(args), kwargs, slots[0]
