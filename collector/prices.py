"""Model prices: the maintained `genai-prices` package plus an override table.

Light at import (settings import :class:`ModelPrice`): the package is imported the first
time a price is looked up. Per (provider, model, day) the per-token rates are measured once
from the package at a small reference usage and kept, so pricing a span is a dict lookup
and four multiplications (the package's own calculation costs ~100+ µs a call).

An override (settings ``prices``, by model-name prefix, the longest prefix wins) beats the
package. A model neither knows has no price: :meth:`Pricer.cost` answers ``None``, never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import BaseModel, Field


class ModelPrice(BaseModel):
    """An override: USD per million tokens (cache prices default to the input price)."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cache_read_per_mtok: float | None = Field(default=None, ge=0, description="cached input read; None: input price")
    cache_write_per_mtok: float | None = Field(default=None, ge=0, description="cache write; None: input price")


# Overrides shipped by default: none, the package prices every model it knows.
DEFAULT_PRICES: dict[str, ModelPrice] = {}

# Provider names of the conventions (gen_ai.provider.name, gen_ai.system, llm.provider) the
# package does not resolve itself, mapped onto its provider ids.
PROVIDER_ALIASES: dict[str, str] = {
    "gcp.gen_ai": "google",
    "x_ai": "x-ai",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "az.ai.openai": "azure",
    "mistral_ai": "mistral",
    "moonshot": "moonshotai",
}

REFERENCE_TOKENS = 1000  # the usage the per-token rates are measured at (below any tier threshold)
NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per token, and per call; ``source`` says where the price came from."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    per_call: float = 0.0
    source: str = ""

    def cost(self, tokens_in: int, tokens_out: int, cache_read: int = 0, cache_write: int = 0) -> float:
        """USD for one call. Input tokens include the cached ones (OTel GenAI semantics); when the cache
        counts exceed them (counted apart, as Anthropic's API does), the input is taken as uncached only."""
        uncached = tokens_in - cache_read - cache_write
        if uncached < 0:
            uncached = tokens_in
        return (uncached * self.input + tokens_out * self.output + cache_read * self.cache_read
                + cache_write * self.cache_write + self.per_call)


def _override_rates(prefix: str, price: ModelPrice) -> Rates:
    read = price.input_per_mtok if price.cache_read_per_mtok is None else price.cache_read_per_mtok
    write = price.input_per_mtok if price.cache_write_per_mtok is None else price.cache_write_per_mtok
    return Rates(price.input_per_mtok / 1e6, price.output_per_mtok / 1e6, read / 1e6, write / 1e6,
                 source=f"override:{prefix}")


def _package_rates(model: str, provider: str, day: int) -> Rates | None:
    """Rates measured from genai-prices for the price in force on ``day`` (days since the epoch)."""
    from genai_prices import Usage, calc_price

    when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=day, hours=12)
    provider_id = PROVIDER_ALIASES.get(provider, provider) or None

    def total(**usage: int) -> tuple[float, Any]:
        result = calc_price(Usage(**usage), model_ref=model, provider_id=provider_id, genai_request_timestamp=when)
        return float(result.total_price), result

    try:
        try:
            base, result = total()
        except LookupError:
            if provider_id is None:
                raise
            provider_id = None  # a provider the package does not know: let the model name find it
            base, result = total()
        n = REFERENCE_TOKENS
        rates = [(total(**usage)[0] - base) / n for usage in (
            {"input_tokens": n}, {"output_tokens": n},
            {"input_tokens": n, "cache_read_tokens": n}, {"input_tokens": n, "cache_write_tokens": n},
        )]
    except (LookupError, ValueError):
        return None
    return Rates(*rates, per_call=base, source=f"genai-prices:{result.provider.id}/{result.model.id}")


class Pricer:
    """Tokens to USD: overrides by longest model-name prefix, else genai-prices, cached per (provider, model, day)."""

    def __init__(self, overrides: dict[str, ModelPrice] | None = None, *, package: bool = True) -> None:
        self._overrides = {prefix.lower(): _override_rates(prefix, price) for prefix, price in (overrides or {}).items()}
        self._prefixes = sorted(self._overrides, key=len, reverse=True)
        self._package = package
        self._cache: dict[tuple[str, str, int], Rates | None] = {}

    def rates(self, model: str, provider: str = "", day: int = 0) -> Rates | None:
        """The rates for a model (``day``: days since the epoch of the call); None when no price is known."""
        key = (provider, model, day)
        try:
            return self._cache[key]
        except KeyError:
            pass
        lowered = model.lower()
        found = next((self._overrides[p] for p in self._prefixes if lowered.startswith(p)), None)
        if found is None and self._package and model:
            found = _package_rates(model, provider.lower(), day)
        self._cache[key] = found
        return found

    def cost(self, model: str, tokens_in: int, tokens_out: int, cache_read: int = 0, cache_write: int = 0,
             *, provider: str = "", start_ns: int = 0) -> float | None:
        """USD for one call, or None when the model has no price."""
        rates = self.rates(model, provider, start_ns // NS_PER_DAY) if model else None
        return None if rates is None else rates.cost(tokens_in, tokens_out, cache_read, cache_write)
