"""Labelers of virtual rows: ordinary kriging fitted on a fold's training rows."""
