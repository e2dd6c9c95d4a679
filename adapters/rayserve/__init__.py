"""Ray Serve: its default autoscaling policy as a simulator baseline (`default_policy.py`) and the Serve config
rendered from a scenario (`render.py`); the actuator and fleetscale's own Serve policy come later."""
