"""A run from plan to recorded row: ``runner`` validates a ``bench run`` command, trains its cohorts
and appends their rows; ``reproduce`` trains a stored run again from its command and config."""
