"""The critic_types study (see experiment.py): critic-types: collapse phase diagrams per critic type, boundaries overlaid."""
