"""``POST /compute``: metrics from summed statistics, through the task's metrics graph."""
