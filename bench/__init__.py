"""distillbench's harness: the CLI, datasets, models, cohort training, results store and reporter."""
