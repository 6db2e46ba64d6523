"""Data stage: synthetic generator, readers, refine (silver) and build (gold)."""
