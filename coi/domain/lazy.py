"""A chain state that builds each product from its own facts, the first time it is asked for.

A service checking one product needs that product's state, not every product's: the
:class:`LazyChainState` holds only the products asked about, each built by replaying that CoI's
own process facts (``load(coi)``), so nobody replays the whole ledger to check one product.
What other writers append meanwhile reaches the products held through :meth:`catch_up`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from coi.domain import messages as say
from coi.domain.errors import ReplayError
from coi.domain.facts import Fact
from coi.domain.process import Process
from coi.domain.state import ChainState, ProductState

__all__ = ["LazyChainState"]


class LazyChainState(ChainState):
    def __init__(self, process: Process, load: Callable[[str], Iterable[Fact]],
                 last_index: int) -> None:
        """``load(coi)``: every process fact on that CoI, in ledger order, up to
        ``last_index`` or later; ``last_index``: the last index the state has seen."""
        super().__init__(process)
        self.last_index = last_index
        self._load = load

    def product(self, coi: str) -> ProductState | None:
        found = self.products.get(coi)
        if found is None:
            own = ChainState(self.process)
            for fact in self._load(coi):
                own.apply(fact)
            found = own.products.get(coi)
            if found is not None:
                self.products[coi] = found
        return found

    def catch_up(self, fact: Fact) -> None:
        """A fact another writer appended: applied to its product if held and not yet in it
        (a product built later by ``load`` reads it from the ledger itself)."""
        if fact.index <= self.last_index:
            raise ReplayError(say.out_of_order(self.last_index), index=fact.index)
        held = self.products.get(fact.subject)
        if held is None or fact.index <= held.last_index:
            self.last_index = fact.index
            return
        self.apply(fact)
