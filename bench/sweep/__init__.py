"""``bench sweep``: many cohorts (dataset x pair x seed) as submitit jobs, locally or on SLURM.

``plan`` expands the grid and leaves out what the results store holds already, ``submit`` turns each
cohort into a requeueable job that runs ``bench run``, ``status`` says where every cohort stands.
"""
