"""The one way a metric says it cannot run here (missing weights, wrong kind of data)."""


class MetricSkipped(RuntimeError):
    """Raised by a metric that cannot be computed; ``evaluate`` records the message and goes on."""
