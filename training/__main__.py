"""`python -m training` is `lakeserve train`: same options, same exit codes."""

from training.cli import main

main()
