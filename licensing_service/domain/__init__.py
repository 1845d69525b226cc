"""Pure business rules. Nothing here reads a clock, a file, or the network:
every function takes ``now`` and returns a decision."""
