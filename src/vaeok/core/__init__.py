"""Shared basics: errors and exit codes, safe paths, password masking, signals, runtime, progress bar."""
