"""Process-level tests: they start fleetscale (or a loop of their own) as child processes on 127.0.0.1 and files
under the test's tmp_path, and stop every one of them by PID."""
