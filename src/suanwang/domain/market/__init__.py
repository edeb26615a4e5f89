"""The compute market's pure core: orders, clearing on HiGHS, prices, money, contracts (no I/O)."""

from suanwang.domain.market.clearing import AskFill, AskOutcome, BidFill, BidOutcome, Clearing, clear_book
from suanwang.domain.market.order import Ask, Bid, Book, Link, canonical_book, validate_ask, validate_bid

__all__ = ["Ask", "AskFill", "AskOutcome", "Bid", "BidFill", "BidOutcome", "Book", "Clearing", "Link",
           "canonical_book", "clear_book", "validate_ask", "validate_bid"]
