"""The training path beyond one process: the distributed world a cohort trains in."""
