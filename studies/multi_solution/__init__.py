"""A small, seeded study of DSDR vs GRPO, DAPO and the ablations on a task with many correct answers per prompt."""
