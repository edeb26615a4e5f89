"""The command line: `suanwang up`, `agent`, and client commands for consumers and operators."""
