"""Verification of a deployment, and what a failed one leads to.

When a release enters ``deployed`` (where ``relbridge_release_deployed`` fires), the
deployment gets a row in the store, unique per (release, n-th deployment): a deployment is
verified once however many daemons saw it. The run happens on a verification thread, never
on the sync worker: it claims the row with a lease, runs the ``[[verify.checks]]`` and the
plugins' ``relbridge_verify_release``, keeps the results, notes them in both systems (a
marker in the note makes a retry add nothing twice), and on a failure bumps the release's
revision count ("needs revision") or, with ``[verify] on_failure = "rollback"``, rolls it
back through ``transition`` and ``propagate`` — the normal rollback path, so the gate,
the rollback hooks, ``[rollback] mark_changes`` and the safety brake all apply.

A run cut short (a crash, a stop) leaves its row pending or running under a lease that
expires; ``resume()`` (``sync --once`` and daemon start) runs it again.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from bridge.config import VerifyConfig
from bridge.engine.comments import verification_marker
from bridge.engine.envelope import SyncReport
from bridge.errors import RelbridgeError
from bridge.release.checks import Check, TimedOut, bounded, run_http_check

if TYPE_CHECKING:
    from bridge.engine import Engine
    from bridge.model import Release
    from bridge.store import Store

log = logging.getLogger(__name__)

#: History source of what verification did (a rollback it caused).
SOURCE = "relbridge"
#: How long a claimed run stays its holder's: beyond every check's worst case.
LEASE_SLACK_SECONDS = 120
NOTE_ATTEMPTS = 3


def deployment_of(store: Store, key: str) -> tuple[int, Any] | None:
    """(n, when) of the release's latest entry into ``deployed``, from its history."""
    entries = [h.at for h in store.history(entity="release", key=key)
               if h.field == "state" and h.new == "deployed"]
    return (len(entries), entries[-1]) if entries else None


class Verifier:
    """Runs deployment verifications for one engine (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.config: VerifyConfig = engine.config.verify
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def deployed(self, release: Release) -> None:
        """The release just entered ``deployed``: record the deployment and verify it
        (nothing at all when no check is configured and no plugin verifies)."""
        if not self.config.checks and not self.engine.hooks.wants("verify_release"):
            return
        found = deployment_of(self.engine.store, release.key)
        if found is None:
            return
        deployment, at = found
        if self.engine.store.open_verification(release.key, deployment, at):
            self._start(release.key, deployment)

    def resume(self) -> int:
        """Start the runs a crash or a stop cut short; returns how many."""
        due = self.engine.store.verifications(due=True)
        for row in due:
            self._start(row["release_key"], row["deployment"])
        return len(due)

    def drain(self, timeout: float | None = None) -> None:
        """Wait for the runs started here (``sync --once`` exits after them)."""
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)

    def _start(self, key: str, deployment: int) -> None:
        thread = threading.Thread(target=self._run_logged, args=(key, deployment),
                                  name=f"verify-{key}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _run_logged(self, key: str, deployment: int) -> None:
        try:
            self.run(key, deployment)
        except Exception:
            log.exception("verification of %s (deployment %d) failed; it is retried on the next resume", key, deployment)

    def _lease_seconds(self) -> float:
        worst = sum(c.timeout_seconds * (c.retries + 1) + c.retries for c in self.config.checks)
        return worst + self.config.plugin_timeout_seconds + LEASE_SLACK_SECONDS

    def run(self, key: str, deployment: int) -> bool | None:
        """Verify one deployment if this process gets its claim; returns whether it passed
        (None: someone else runs it)."""
        store = self.engine.store
        if not store.claim_verification(key, deployment, self.engine.instance_id, self._lease_seconds()):
            return None
        release = self.engine.records.models("release", [key])[0]
        checks = self.checks(release)
        passed = all(check.ok for check in checks)
        store.finish_verification(key, deployment, passed=passed, checks=[c.as_dict() for c in checks])
        log.info("release %s deployment %d verified: %s", key, deployment, "passed" if passed else "FAILED")
        self._note(release, deployment, checks, passed)
        if not passed:
            store.set_verification(key, deployment, action=self._on_failure(key))
        return passed

    def checks(self, release: Release) -> list[Check]:
        """The built-in HTTP checks, then the plugins' (bounded, see ``checks``)."""
        results = [run_http_check(spec) for spec in self.config.checks]
        if not self.engine.hooks.wants("verify_release"):
            return results
        try:
            found = bounded(lambda: self.engine.hooks.verify_release(release),
                            self.config.plugin_timeout_seconds, f"verify-plugins-{release.key}")
            results += [c if isinstance(c, Check) else Check(str(c), False, "not a Check") for c in found]
        except TimedOut as exc:
            results.append(Check("plugins", False, f"plugin verifiers {exc}"))
        except Exception as exc:  # a verifier that breaks fails verification, never the sync
            results.append(Check("plugins", False, f"a plugin verifier raised {type(exc).__name__}: {exc}"))
        return results

    def _on_failure(self, key: str) -> str:
        engine = self.engine
        if self.config.on_failure == "rollback":
            if engine.transition(key, "rolled_back", SOURCE):
                report = SyncReport()
                for _ in range(5):
                    follow_ups = engine.locks.follow_ups.pop_all()
                    if not follow_ups:
                        break
                    for entity, follow_key in follow_ups:
                        engine.propagate(entity, follow_key, report)
                for error in report.errors:
                    log.warning("rollback of %s: %s", key, error)
                return "rolled_back"
            return "rollback_refused"
        engine.release._update_fields(
            "release", key, SOURCE, lambda f: {**f, "revision_count": int(f.get("revision_count") or 0) + 1},
            derived=True)
        return "needs_revision"

    def _note(self, release: Release, deployment: int, checks: list[Check], passed: bool) -> None:
        marker = verification_marker(release.key, deployment)
        failed = [c for c in checks if not c.ok]
        head = "passed" if passed else f"FAILED ({len(failed)} of {len(checks)} checks)"
        lines = [f"relbridge verified {release.name} (deployment {deployment}): {head}"]
        lines += [f"- {c.name}: {'ok' if c.ok else 'FAILED'} — {c.detail}" for c in checks] or ["- no checks configured"]
        text = "\n".join([*lines, marker])
        refs = self.engine.store.refs("release", release.key)
        noted: list[str] = []
        for system, ref in sorted(refs.items()):
            adapter = self.engine.adapters.get(system)
            if adapter is None or not hasattr(adapter, "add_release_note"):
                continue
            if self._note_one(adapter, system, ref.ext_id, text, marker):
                noted.append(system)
        self.engine.store.set_verification(release.key, deployment, noted=noted)

    @staticmethod
    def _note_one(adapter: Any, system: str, ext_id: str, text: str, marker: str) -> bool:
        for attempt in range(NOTE_ATTEMPTS):
            try:
                adapter.add_release_note(ext_id, text, marker)
                return True
            except RelbridgeError as exc:
                log.warning("verification note in %s (attempt %d): %s", system, attempt + 1, exc)
        return False
