"""Model rates for the engine's cost column: (provider, model, day) -> USD per token.

The engine prices calls at read time (``CostUsd`` is an ALIAS over ``model_rates_dict``). This
component fills that table: every ``interval_s`` it asks the store which stored calls have
tokens but no rates row yet (whoever wrote them), prices each (provider, model, day) once with
:class:`Pricer` (overrides, then the genai-prices package) and inserts the rates, or a row
saying no price is known (the engine then reads the cost as unknown, never 0).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date

from pydantic import BaseModel, Field

from flightrec.collector.prices import DEFAULT_PRICES, ModelPrice, Pricer
from flightrec.store import Store
from flightrec.store.meaning import RateRow

log = logging.getLogger(__name__)
EPOCH = date(1970, 1, 1)


class RatesConfig(BaseModel):
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES),
                                          description="overrides by model-name prefix; they win over the package")
    package_prices: bool = Field(default=True, description="price models the overrides do not name from genai-prices")
    interval_s: float = Field(default=1.0, gt=0, description="how often stored calls are checked for unpriced models")


def rate_row(pricer: Pricer, provider: str, model: str, day: date) -> RateRow:
    rates = pricer.rates(model, provider, (day - EPOCH).days) if model else None
    if rates is None:
        return RateRow(provider=provider, model=model, day=day, known=False)
    return RateRow(provider=provider, model=model, day=day, known=True, input=rates.input, output=rates.output,
                   cache_read=rates.cache_read, cache_write=rates.cache_write, per_call=rates.per_call,
                   source=rates.source)


def resolve_rates(store: Store, pricer: Pricer) -> int:
    """Price every stored (provider, model, day) without rates; answer how many were added."""
    added, tried = 0, set()
    while True:
        keys = [key for key in store.meaning.unresolved_rates() if key not in tried]
        if not keys:  # none left, or only ones a row did not settle (a model name that is not UTF-8)
            return added
        store.meaning.insert_rates([rate_row(pricer, *key) for key in keys])
        tried.update(keys)
        added += len(keys)


class RateResolver:
    """A background thread keeping the rates table (``model_rates_table``) complete.

    Lifecycle: start, shutdown (safe twice).

    ``leader`` (flightrec/leader.py) is asked at start and before each pass: one server prices for all.
    """

    def __init__(self, store: Store, config: RatesConfig | None = None,
                 leader: Callable[[], bool] | None = None) -> None:
        self.store = store
        self.leads = leader or (lambda: True)
        self.config = config or RatesConfig()
        self.pricer = Pricer(self.config.prices, package=self.config.package_prices)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Forget rates priced under other overrides, price what is stored now (when leading), then keep up in
        the background."""
        if self.leads():
            self.store.meaning.clear_rates()
            resolve_rates(self.store, self.pricer)
        self._thread = threading.Thread(target=self._run, name="flightrec-rates", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.interval_s):
            try:
                if self.leads():
                    resolve_rates(self.store, self.pricer)
            except Exception:  # the next pass retries; a stopped store ends the thread with shutdown
                log.exception("rates: pricing stored calls failed")

    def shutdown(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
