"""The pure core: plain data and functions, no database, network or clock."""
