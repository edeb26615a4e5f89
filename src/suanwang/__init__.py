"""suanwang (算网): an open computing power network.

Connect clusters at many sites through one agent, measure all compute in one
unit, price, trade, schedule and settle it.  See README.md and DESIGN.md.
"""

__version__ = "0.1.0"
