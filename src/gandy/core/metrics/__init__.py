"""Metrics: order parameters of the particle cloud (``order``) and, later, divergences and image scores."""

from gandy.core.metrics.order import ORDER_PARAMETERS, order_parameters, w1_exact

__all__ = ["ORDER_PARAMETERS", "order_parameters", "w1_exact"]
