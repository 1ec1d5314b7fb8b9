"""``python -m clearwall`` runs the CLI."""

from clearwall.cli.main import main

main()
