"""Views: figures and the interactive report, drawn from directories read through the store."""
