"""Virtual-sample generators: fit on a fold's training rows, return virtual X (and maybe y)."""
