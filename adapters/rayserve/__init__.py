"""Ray Serve: the default autoscaling policy as a simulator baseline (the actuator and Serve config come later)."""
