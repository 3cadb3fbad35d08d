"""Score what a source delivers and hand each result to the sinks, the drift monitor and the metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from defectlens.engine.predict import Scorer, score_images
from defectlens.line.drift import DriftMonitor
from defectlens.line.metrics import StationMetrics
from defectlens.line.sinks import Result, Sink
from defectlens.line.sources import Part
from defectlens.line.store import StationStore

logger = logging.getLogger(__name__)


class Outputs:
    """Where every result goes: folder sinks write it, network sinks get it through the store's spool.

    Args:
        sinks: from `open_sinks`.
        store: the spool (and ledger); needed when a sink is spooled.
        drift: watches the raw scores; None turns drift off.
    """

    def __init__(self, sinks: Sequence[Sink], store: StationStore | None, drift: DriftMonitor | None) -> None:
        self.sinks, self.store, self.drift = list(sinks), store, drift
        spooled = [sink for sink in self.sinks if sink.spooled]
        self.metrics = StationMetrics(drift, [(sink.name, sink.pending) for sink in spooled])

    def publish(self, results: Sequence[Result], ledger_keys: Sequence[tuple[str, str]] = ()) -> None:
        """Hand `results` on; `ledger_keys` are marked scored in the same transaction as the spooling."""
        for result in results:
            label = result.entry.get("label")
            if label is None:
                self.metrics.bad_files.inc()
            else:
                self.metrics.images.labels(label=label).inc()
            for sink in self.sinks:
                if not sink.spooled:
                    sink.write(result)
        if self.drift is not None:
            self.drift.update(r.entry["raw_score"] for r in results if "raw_score" in r.entry)
        spooled = [sink for sink in self.sinks if sink.spooled]
        if self.store is not None:
            self.store.record(
                [(sink.name, result.entry) for result in results for sink in spooled], ledger_keys
            )
        for sink in spooled:
            sink.wake()

    def close(self) -> None:
        """Close the sinks (spooled ones deliver what they can first), then the store."""
        for sink in self.sinks:
            sink.close()
        if self.store is not None:
            self.store.close()


def timing(arrived: float, **milliseconds: float) -> dict[str, Any]:
    """The `timing` object of a published result: when it arrived, and where its time went."""
    return {
        "arrived": datetime.fromtimestamp(arrived, UTC).isoformat(timespec="milliseconds"),
        **{key: round(value, 2) for key, value in milliseconds.items()},
        "latency_ms": round(1000 * (time.time() - arrived), 2),
    }


class Station:
    """Scores parts in batches and publishes one result per part.

    Args:
        scorer: a run's detector or an exported model (`open_scorer`).
        outputs: where results go.
        task, min_area: as for `defectlens predict`.
        max_batch: most parts per model call (a backlog is scored in batches, a trickle one by one).
    """

    def __init__(
        self,
        scorer: Scorer,
        outputs: Outputs,
        task: str = "detection",
        min_area: int = 16,
        max_batch: int = 8,
    ) -> None:
        self.scorer, self.outputs, self.task, self.min_area = scorer, outputs, task, min_area
        self.max_batch = max_batch
        self.scored = 0
        self._predict = outputs.metrics.timed(scorer.predict)

    def run(self, source: Any, stop: threading.Event, idle_exit_s: float | None = None) -> int:
        """Score until `stop` is set, the source ends, or nothing arrived for `idle_exit_s` seconds.

        Returns:
            How many parts were published (bad files included).
        """
        self._last_activity = time.monotonic()
        if idle_exit_s is not None:
            threading.Thread(target=self._idle_watch, args=(source, stop, idle_exit_s), daemon=True).start()
        for parts in source.batches(stop, self.max_batch):
            self.score(parts)
            self._last_activity = time.monotonic()
        return self.scored

    def _idle_watch(self, source: Any, stop: threading.Event, idle_exit_s: float) -> None:
        while not stop.wait(0.1):
            if source.idle() and time.monotonic() - self._last_activity >= idle_exit_s:
                logger.info("nothing new for %.0f s: stopping", idle_exit_s)
                stop.set()

    def score(self, parts: Sequence[Part]) -> list[Result]:
        """Score `parts` in one model call and publish their results, in order."""
        readable = [part for part in parts if part.error is None]
        start = time.perf_counter()
        scored = iter(score_images(self._predict, readable, self.task, self.min_area))
        model_ms = 1000 * (time.perf_counter() - start) / max(1, len(readable))
        results = []
        for part in parts:
            entry, heat, found = ({"path": part.name, "error": part.error}, None, None)
            if part.error is None:
                entry, heat, found = next(scored)
            if heat is None:
                logger.warning("%s", entry["error"])
                entry["timing"] = timing(part.arrived)
            else:
                entry["timing"] = {
                    **timing(part.arrived, read_ms=part.read_ms, model_ms=model_ms),
                    "batch": len(readable),
                }
            results.append(Result(entry, part.image, heat, found))
        self.outputs.publish(results, [part.ledger_key for part in parts if part.ledger_key is not None])
        self.scored += len(results)
        return results
