"""Prometheus as the loop's metrics source: the standard names of vLLM, SGLang, Ray Serve, the endpoint picker and
the DCGM exporter, read through its HTTP API (`PrometheusMetricsSource`); the queries in `queries.py`, the parsing
in `parse.py`."""

from adapters.prometheus.source import PrometheusMetricsSource, error_from_exception

__all__ = ["PrometheusMetricsSource", "error_from_exception"]
