"""`python -m driftloop.cli`: the `driftloop` command."""

from driftloop.cli.app import main

main()
