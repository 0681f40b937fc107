"""The saturated-group study: DSDR against GRPO where most groups are entirely correct (Prop. C.4's regime)."""
