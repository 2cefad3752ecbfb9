"""Model prices: USD per million tokens by model-name prefix (light: settings import it)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelPrice(BaseModel):
    """USD per million tokens."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o": ModelPrice(input_per_mtok=2.5, output_per_mtok=10.0),
    "gpt-4o-mini": ModelPrice(input_per_mtok=0.15, output_per_mtok=0.6),
    "gpt-4.1": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0),
    "claude-sonnet": ModelPrice(input_per_mtok=3.0, output_per_mtok=15.0),
    "claude-haiku": ModelPrice(input_per_mtok=0.8, output_per_mtok=4.0),
}
