"""`python -m pipeline.cli`: the same command without the console script on PATH."""

from pipeline.cli.app import main

main()
