"""``relbridge run``: the service (``service``), its webhook receiver (``receiver``), the
durable inbox (``inbox``), pollers (``poll``), workers (``work``), the store watch
(``watch``), logging (``logs``) and Prometheus metrics (``metrics``)."""
