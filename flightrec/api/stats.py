"""Counts of what is queryable now."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from flightrec.api.deps import get_store
from flightrec.store import Store, StoreStats

router = APIRouter(tags=["stats"])


@router.get("/stats", summary="Counts of what is queryable now", response_model=StoreStats)
def stats(store: Store = Depends(get_store)) -> StoreStats:
    return store.stats()
