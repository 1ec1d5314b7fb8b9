"""The policy core: orders and rules as values, the compiled snapshot and its matcher."""
