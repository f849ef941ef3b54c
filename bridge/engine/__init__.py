"""The sync engine (DESIGN §3, §10): read -> map -> merge -> persist -> propagate.

* ``pipeline`` -- the ``Engine``, composing the steps: passes (``sync --once``), one object
  at a time (daemon workers), reconcile, deletions;
* ``ingest`` -- one system record into its canonical record; ``propagate`` -- the record's
  pending writes to each system; ``creates`` -- creates with correlation look-ups and a
  create journal; ``records`` -- validate and save a record; ``locks`` -- record locks;
* ``envelope`` -- what is kept per canonical record, and the report of a pass;
* ``merge`` -- per-field merge of one system's edits (owners, conflicts, policies);
* ``adoption`` -- the first meeting of two objects never synced;
* ``safety`` -- the brake on destructive writes; ``dryrun`` -- a pass that writes nothing;
* ``users`` -- assignees matched by e-mail, the unmatched ones kept for `relbridge status`.
"""

from bridge.engine.creates import CreateInProgress
from bridge.engine.envelope import Envelope, SyncReport
from bridge.engine.pipeline import ENTITY_ORDER, OTHER, Engine

__all__ = ["Engine", "SyncReport", "Envelope", "CreateInProgress", "ENTITY_ORDER", "OTHER"]
