"""`python -m defectlens` runs the command line."""

from defectlens.cli import app

app(prog_name="defectlens")
