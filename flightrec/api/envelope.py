"""The one list envelope every list route answers with."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

Item = TypeVar("Item")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    count: int

    @classmethod
    def of(cls, items: list[Item]) -> "Page[Item]":
        return cls(items=items, count=len(items))
