"""Mapping files: their format (``spec``), value codecs (``codecs``), running one system's
mapping in both directions (``convert``), loading both files (``loader``) and the checks
behind ``relbridge mappings check`` (``check``)."""
