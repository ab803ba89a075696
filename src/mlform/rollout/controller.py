"""Walks a deployment's rollout: starts version servers, moves router weights, analyses.

The controller owns the decisions (which versions serve, with which weights, when to
promote or roll back) and records each one in the journal before acting on the next;
everything with side effects goes through :class:`Runtime`, which the deployment
provider implements with the Pulumi engine (servers, router) and HTTP (routes,
metrics). So the walk is the same whether it runs for ``mlform apply``, resumes after an
interruption, or continues for ``mlform rollout promote``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from mlform.rollout.analysis import AnalysisError, Check, Snapshot, judge, measure
from mlform.rollout.journal import Phase, RolloutJournal, RolloutRecord, Served
from mlform.rollout.strategy import Strategy
from mlform.state.timestamps import utc_now

__all__ = ["Controller", "Runtime", "Wanted"]

_POLL_S = 0.5  # how often a waiting rollout looks for promote/abort requests


class Runtime(Protocol):
    def serve(self, versions: Sequence[Served]) -> Mapping[str, str]:
        """Run exactly these version servers (and the router); their base URLs by upstream."""
        ...

    def route(self, table: Mapping[str, Any]) -> int:
        """Send the router a new route table; the generation the router now holds."""
        ...

    def metrics(self, base_url: str) -> Snapshot:
        """Scrape one version server's metrics."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def monotonic(self) -> float: ...

    def progress(self, message: str, fraction: float | None) -> None: ...


@dataclass(frozen=True, slots=True)
class Wanted:
    """What the deployment's config asks to serve once the rollout is done."""

    primary: tuple[Served, ...]  # one version; several for an A/B test (with weights)
    mirror: Served | None = None  # shadow: the model receiving a copy of the traffic
    mirror_percent: int = 0
    route_by: str = "weight"
    key: str | None = None


class Controller:
    def __init__(
        self,
        deployment: str,
        strategy: Strategy,
        journal: RolloutJournal,
        runtime: Runtime,
    ) -> None:
        self.deployment = deployment
        self.strategy = strategy
        self.journal = journal
        self.runtime = runtime
        self.urls: dict[str, str] = {}
        self.aborted = False  # this walk rolled a version back

    # -- entry points ------------------------------------------------------------------

    def deploy(self, wanted: Wanted) -> RolloutRecord:
        """Bring the deployment to ``wanted`` by its strategy; the final journal record."""
        record = self.journal.load(self.deployment)
        progressive = self.strategy.type in ("canary", "blue_green") and len(wanted.primary) == 1
        if record is not None and record.pending and progressive:
            assert record.canary is not None
            if record.canary.ref == wanted.primary[0].ref:
                record = self._save(
                    record.log(f"resuming the rollout of {record.canary.ref} at step {record.step}")
                )
                self._say(record.message)
                return self._continue(record, wanted)
            record = self._abort(record, wanted, f"superseded by {wanted.primary[0].ref}")
            self.aborted = False  # replaced by a newer version, not rolled back
        if (
            record is not None
            and record.phase == Phase.ABORTED
            and record.canary is not None
            and wanted.primary == (record.canary,)
        ):
            # The version was rolled back (by analysis or a monitor): it is not tried again
            # until the config asks for another one.
            self._say(f"{record.canary.ref} was rolled back; still serving the stable version")
            kept = Wanted(record.stable, wanted.mirror, wanted.mirror_percent)
            settled = self._settle(replace(record, canary=None), kept)
            return self._save(replace(settled, canary=record.canary))
        if record is None or not record.stable or not progressive:
            return self._switch(record, wanted)
        if record.stable == wanted.primary:
            return self._settle(record, wanted)
        canary = wanted.primary[0]
        record = self._save(
            replace(
                record,
                strategy=self.strategy.type,
                phase=Phase.PROGRESSING,
                canary=canary,
                step=0,
                weight=0,
                failed_checks=0,
                checks=(),
                requested=None,
                started_at=utc_now(),
            ).log(f"rollout of {canary.ref} started ({self.strategy.type})")
        )
        return self._continue(record, wanted)

    def resume(self, wanted: Wanted, request: str | None = None) -> RolloutRecord:
        """Continue a pending rollout (``request``: "promote" or "abort" first)."""
        record = self.journal.load(self.deployment)
        if record is None or not record.pending:
            raise LookupError(f"{self.deployment} has no rollout in progress")
        if request is not None:
            record = self.journal.request(self.deployment, request)
        return self._continue(record, wanted)

    def rollback(self, wanted: Wanted, why: str) -> RolloutRecord:
        """Return all traffic to the version that served before the current one.

        A monitor's ``on_breach: rollback``: a pending rollout is aborted; a settled one
        goes back to ``previous`` and the version it leaves is recorded as rolled back
        (phase aborted), so the next apply does not roll it out again.
        """
        record = self.journal.load(self.deployment)
        if record is None:
            raise LookupError(f"{self.deployment} was never deployed")
        if record.pending:
            return self._abort(record, wanted, why)
        if not record.previous:
            raise LookupError(
                f"{self.deployment} has no earlier version to return to (it serves "
                f"{', '.join(s.ref for s in record.stable) or 'nothing'} since its first deploy)"
            )
        mirror = (record.mirror,) if record.mirror else ()
        leaving = record.stable
        self._serve((*leaving, *record.previous, *mirror))
        back = replace(record, stable=record.previous, previous=(), canary=None, weight=0, step=0)
        back = self._route(back, wanted)
        self._serve((*record.previous, *mirror))
        self.aborted = True
        was = ", ".join(s.ref for s in leaving)
        now = ", ".join(s.ref for s in record.previous)
        rolled_back = replace(
            back,
            phase=Phase.ABORTED,
            canary=leaving[0] if len(leaving) == 1 else None,
            requested=None,
        )
        return self._save(rolled_back.log(f"rolled back from {was} to {now}: {why}"))

    # -- strategies --------------------------------------------------------------------

    def _switch(self, record: RolloutRecord | None, wanted: Wanted) -> RolloutRecord:
        """First deploy, recreate, rolling, A/B and shadow: no steps, one switch."""
        old = () if record is None else record.stable
        new = wanted.primary
        final = (*new, *((wanted.mirror,) if wanted.mirror else ()))
        first = final if self.strategy.type == "recreate" else _unique((*old, *final))
        self._serve(first)
        settled = RolloutRecord(
            deployment=self.deployment,
            strategy=self.strategy.type,
            phase=Phase.HEALTHY,
            stable=new,
            mirror=wanted.mirror,
            previous=_previous(record, new),
            generation=0 if record is None else record.generation,
            events=() if record is None else record.events,
        )
        settled = self._route(settled, wanted)
        if {s.upstream for s in first} != {s.upstream for s in final}:
            self._serve(final)  # stop what no longer serves, after traffic left it
        refs = ", ".join(f"{s.ref} ({s.weight}%)" if len(new) > 1 else s.ref for s in new)
        return self._save(settled.log(f"serving {refs}"))

    def _settle(self, record: RolloutRecord, wanted: Wanted) -> RolloutRecord:
        """Nothing to roll out: make sure the servers and routes are as recorded."""
        record = replace(record, mirror=wanted.mirror)
        self._serve((*record.stable, *((wanted.mirror,) if wanted.mirror else ())))
        return self._save(self._route(record, wanted))

    def _continue(self, record: RolloutRecord, wanted: Wanted) -> RolloutRecord:
        assert record.canary is not None
        self._serve((*record.stable, record.canary))
        if self.strategy.type == "blue_green":
            return self._blue_green(record, wanted)
        return self._canary(replace(record, phase=Phase.PROGRESSING), wanted)

    def _canary(self, record: RolloutRecord, wanted: Wanted) -> RolloutRecord:
        steps = self.strategy.steps
        while record.step < len(steps):
            step = steps[record.step]
            if step.weight >= 100:
                break  # the last step is the promotion
            record = self._save(
                self._route(replace(record, weight=step.weight), wanted).log(
                    f"step {record.step + 1}/{len(steps)}: {step.weight}% of traffic on "
                    f"{_ref(record.canary)}"
                )
            )
            self.runtime.progress(record.message, (record.step + 1) / (len(steps) + 1))
            hold = step.pause_s or 0.0
            if self.strategy.analysis is not None and self.strategy.analysis.thresholds:
                hold = hold or self.strategy.analysis.interval_s
            record, outcome = self._hold(record, hold)
            if outcome == "abort":
                return self._abort(record, wanted, record.message)
            if outcome == "promote":
                break
            if outcome == "paused":
                return record
            record = self._save(replace(record, step=record.step + 1))
        return self._promote(record, wanted)

    def _blue_green(self, record: RolloutRecord, wanted: Wanted) -> RolloutRecord:
        record = self._route(replace(record, weight=0), wanted)
        if record.phase == Phase.PROGRESSING:
            record = record.log(f"{_ref(record.canary)} is ready for preview")
        record = self._save(record)
        if not self.strategy.auto_promote:
            request = self._take_request(record)
            if request == "promote":
                return self._promote(record, wanted)
            if request == "abort":
                return self._abort(record, wanted, "aborted by `mlform rollout abort`")
            return self._save(
                replace(record, phase=Phase.PAUSED).log(
                    f"{_ref(record.canary)} is in preview (header X-Mlform-Preview: true); "
                    "run `mlform rollout promote` to switch traffic or `mlform rollout abort`"
                )
            )
        record, outcome = self._hold(record, self.strategy.promote_after_s or 0.0, analyse=False)
        if outcome == "abort":
            return self._abort(record, wanted, record.message)
        return self._promote(record, wanted)

    # -- promotion and abort -----------------------------------------------------------

    def _promote(self, record: RolloutRecord, wanted: Wanted) -> RolloutRecord:
        canary = record.canary
        assert canary is not None
        old = [s.ref for s in record.stable if s.upstream != canary.upstream]
        promoted = replace(
            record,
            phase=Phase.HEALTHY,
            stable=(canary,),
            previous=_previous(record, (canary,)),
            canary=None,
            weight=0,
            step=0,
        )
        record = self._save(
            self._route(promoted, wanted).log(f"promoted {canary.ref}: all traffic on it")
        )
        if self.strategy.type == "blue_green" and self.strategy.scale_down_delay_s > 0 and old:
            self._say(f"keeping {', '.join(old)} for {self.strategy.scale_down_delay_s:g}s")
            self.runtime.sleep(self.strategy.scale_down_delay_s)
        self._serve((canary, *((wanted.mirror,) if wanted.mirror else ())))
        return self._save(
            record.log(f"{canary.ref} is stable; stopped {', '.join(old) or 'nothing'}")
        )

    def _abort(self, record: RolloutRecord, wanted: Wanted, why: str) -> RolloutRecord:
        self.aborted = True
        canary = record.canary
        record = self._route(replace(record, weight=0, canary=None), wanted)
        self._serve((*record.stable, *((wanted.mirror,) if wanted.mirror else ())))
        stable = ", ".join(s.ref for s in record.stable)
        return self._save(
            replace(record, phase=Phase.ABORTED, canary=canary, weight=0, requested=None).log(
                f"rollout of {_ref(canary)} aborted: {why}; traffic is back on {stable}"
            )
        )

    # -- waiting and analysis ----------------------------------------------------------

    def _hold(
        self, record: RolloutRecord, seconds: float, *, analyse: bool = True
    ) -> tuple[RolloutRecord, str]:
        """Wait ``seconds`` at the current weight, checking the canary every interval.

        The outcome is "done", "promote", "abort" (failed analysis or a request) or
        "paused" (failed analysis without auto rollback).
        """
        analysis = self.strategy.analysis if analyse else None
        checking = analysis is not None and bool(analysis.thresholds) and record.canary
        start = self.runtime.monotonic()
        baseline = self._snapshot(record) if checking else None
        next_check = start + analysis.interval_s if checking and analysis else math.inf
        end = start + seconds
        while True:
            request = self._take_request(record)
            if request == "promote":
                return self._save(record.log("promotion requested")), "promote"
            if request == "abort":
                return record.log("aborted by `mlform rollout abort`"), "abort"
            now = self.runtime.monotonic()
            if checking and analysis is not None and (now >= next_check or now >= end):
                record, after = self._check(record, baseline)
                baseline = after
                next_check = now + analysis.interval_s
                if analysis.aborts_after(record.failed_checks):
                    failures = "; ".join(record.checks[-1].get("failures", ()))
                    message = (
                        f"analysis failed {record.failed_checks} time(s) "
                        f"(limit {analysis.failure_limit}): {failures}"
                    )
                    if self.strategy.auto_rollback:
                        return self._save(record.log(message)), "abort"
                    paused = replace(record, phase=Phase.PAUSED)
                    return self._save(paused.log(f"{message}; paused: promote or abort")), "paused"
            if now >= end:
                return record, "done"
            self.runtime.sleep(max(0.0, min(_POLL_S, end - now, next_check - now)))

    def _snapshot(self, record: RolloutRecord) -> Snapshot | None:
        assert record.canary is not None
        try:
            return self.runtime.metrics(self.urls[record.canary.upstream])
        except AnalysisError:
            return None

    def _check(
        self, record: RolloutRecord, baseline: Snapshot | None
    ) -> tuple[RolloutRecord, Snapshot | None]:
        analysis = self.strategy.analysis
        assert analysis is not None and record.canary is not None
        what = f"{record.canary.ref} at {record.weight}%"
        after: Snapshot | None
        try:
            after = self.runtime.metrics(self.urls[record.canary.upstream])
        except AnalysisError as exc:
            after = None
            check = Check(utc_now(), {}, (str(exc),))
        else:
            if baseline is None:
                check = Check(utc_now(), {}, ("no baseline scrape of the canary's metrics",))
            else:
                names = [t.metric for t in analysis.thresholds]
                check = judge(
                    measure(baseline, after, names), analysis.thresholds, now=utc_now(), what=what
                )
        entry = {**check.to_dict(), "step": record.step, "weight": record.weight}
        record = record.checked(entry, failed=not check.passed)
        verdict = "passed" if check.passed else "failed: " + "; ".join(check.failures)
        values = ", ".join(f"{k} {_fmt(v)}" for k, v in check.values.items())
        record = self._save(
            record.log(f"analysis of {what} {verdict}" + (f" ({values})" if values else ""))
        )
        self.runtime.progress(record.message, None)
        return record, after

    # -- effects -----------------------------------------------------------------------

    def _serve(self, versions: Sequence[Served]) -> None:
        self.urls = dict(self.runtime.serve(_unique(versions)))

    def _route(self, record: RolloutRecord, wanted: Wanted) -> RolloutRecord:
        serving = [*record.stable, *((record.canary,) if record.canary else ())]
        upstreams = {
            s.upstream: {"url": self.urls[s.upstream], "version": str(s.version)}
            for s in _unique((*serving, *((record.mirror,) if record.mirror else ())))
            if s.upstream in self.urls
        }
        table: dict[str, Any] = {
            "generation": record.generation + 1,
            "upstreams": upstreams,
            "split": self._split(record),
            "route_by": wanted.route_by if len(record.stable) > 1 else "weight",
            "key": wanted.key if len(record.stable) > 1 else None,
            "mirror": None,
            "preview": None,
        }
        if record.mirror is not None and wanted.mirror_percent > 0:
            table["mirror"] = {"upstream": record.mirror.upstream, "percent": wanted.mirror_percent}
        if self.strategy.type == "blue_green" and record.canary is not None:
            table["preview"] = record.canary.upstream
        return replace(record, generation=self.runtime.route(table))

    def _split(self, record: RolloutRecord) -> dict[str, int]:
        if record.canary is None or (self.strategy.type == "blue_green" and record.weight < 100):
            if len(record.stable) == 1:
                return {record.stable[0].upstream: 100}
            return {s.upstream: s.weight for s in record.stable}
        if record.weight >= 100 or not record.stable:
            return {record.canary.upstream: 100}
        split = {record.stable[0].upstream: 100 - record.weight}
        split[record.canary.upstream] = record.weight
        return split

    def _save(self, record: RolloutRecord) -> RolloutRecord:
        return self.journal.save(record)

    def _take_request(self, record: RolloutRecord) -> str | None:
        return self.journal.take_request(record.deployment)

    def _say(self, message: str) -> None:
        self.runtime.progress(message, None)


def _unique(versions: Sequence[Served]) -> tuple[Served, ...]:
    seen: dict[str, Served] = {}
    for served in versions:
        seen.setdefault(served.upstream, served)
    return tuple(seen.values())


def _previous(record: RolloutRecord | None, new: tuple[Served, ...]) -> tuple[Served, ...]:
    """What a rollback from ``new`` returns to: the versions served before it."""
    if record is None:
        return ()
    old = tuple(s for s in record.stable if s not in new)
    return old or record.previous


def _ref(served: Served | None) -> str:
    return "nothing" if served is None else served.ref


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
