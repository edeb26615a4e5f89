"""Tables of the compute market: orders on the board, one claim row per cleared session, contract lines.

The claim row (``market_clears``, primary key = session id) is written first in the transaction that
books a clear, so of two replicas clearing the same session one commits and the other's whole
transaction (ledger transfers included) rolls back on the key.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from suanwang.store.tables import Base


class MarketOrderRow(Base):
    __tablename__ = "market_orders"
    __table_args__ = (Index("ix_market_orders_session", "session_id", "state"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(40))
    side: Mapped[str] = mapped_column(String(8))  # ask | bid
    tenant_id: Mapped[str] = mapped_column(String(64))  # the provider (ask) or consumer (bid)
    state: Mapped[str] = mapped_column(String(16))  # live | withdrawn
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class MarketClearRow(Base):
    __tablename__ = "market_clears"
    session_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    cleared_at: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(40))
    welfare_fen: Mapped[int] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(Text)  # Clearing.canonical_json()


class MarketContractRow(Base):
    __tablename__ = "market_contracts"
    __table_args__ = (Index("ix_market_contracts_site_slot", "site", "slot_start"),
                      Index("ix_market_contracts_consumer", "consumer"))
    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # session/bid/ask/slot
    session_id: Mapped[str] = mapped_column(String(40))
    bid_id: Mapped[str] = mapped_column(String(64))
    consumer: Mapped[str] = mapped_column(String(64))
    ask_id: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(100))
    resource_class: Mapped[str] = mapped_column(String(20))
    slot_start: Mapped[float] = mapped_column(Float)
    slot_end: Mapped[float] = mapped_column(Float)
    units: Mapped[int] = mapped_column(Integer)
    buyer_price_cf: Mapped[int] = mapped_column(Integer)
    seller_price_cf: Mapped[int] = mapped_column(Integer)
