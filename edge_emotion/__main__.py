"""`python -m edge_emotion` runs the CLI."""

from edge_emotion.cli import main

main()
