"""Ray as a compute cluster: the capacity planner's evaluations as Ray tasks."""
