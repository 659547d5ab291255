"""Figures, tables and notebooks regenerated from run directories."""
