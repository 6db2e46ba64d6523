"""Monitoring: drift (Evidently and PSI), realised performance, reports, alerts."""
