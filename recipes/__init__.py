"""Prodigy recipes. Importing this package does not import Prodigy; the recipe module does."""
