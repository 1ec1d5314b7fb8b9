"""The ``clearwall`` command: one typer app, a module per command group."""
