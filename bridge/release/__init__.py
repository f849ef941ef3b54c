"""Release-management rules kept with the canonical record: the authorization gate's
transitions, derived lifecycle, links between releases, changes and incidents, rollbacks."""
