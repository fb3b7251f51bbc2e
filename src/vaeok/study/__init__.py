"""Study-level logic that needs no tracking: selection rules and estimates (`selection`)."""
