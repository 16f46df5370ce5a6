"""`python -m lakeserve`: the same as the `lakeserve` console script."""

from lakeserve.cli import main

main()
