"""What the user sees while work runs: progress lines and bars, warnings shown even with --quiet,
and how counts are worded. Imports nothing else of distillbench, so every layer may use it."""
