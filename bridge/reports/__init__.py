"""What relbridge tells people: ``relbridge status`` and ``release show`` (``status``), the
release KPIs (``kpi``) and the dead-letter list (``dlq``)."""
