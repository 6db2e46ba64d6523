"""Modeling stage: split, features, candidates, calibration, evaluation, the packaged model."""
