"""The running parts of one server process, started in order and stopped in reverse.

The server's own periodic work (detector passes, paging, the evidence sequencer, rates, retention,
re-derivation at start) runs on the elected leader only; intake and the API on every process
(flightrec/leader.py has the table and the reasons).
"""

from __future__ import annotations

import logging

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flightrec.collector import BatchWriter, IngestPipeline, WriteAheadLog
from flightrec.collector.decode import decode_body
from flightrec.collector.grpc_server import GrpcReceiver
from flightrec.collector.rates import RateResolver
from flightrec.detectors.pager import PagerRoutes
from flightrec.detectors.runner import DetectorRunner
from flightrec.evidence import keys
from flightrec.evidence.audit_heads import HeadKeeper
from flightrec.evidence.sequencer import Sequencer
from flightrec.leader import LeaderElector
from flightrec.rederive import RederiveJob
from flightrec.settings import Settings
from flightrec.rollback import KillSwitches, RollbackService, SystemRegistry, UndoExecutor
from flightrec.store import Store, open_store

log = logging.getLogger(__name__)


class Runtime:
    """Store, WAL, writer, intake pipeline, gRPC receiver, rollback (with its registry of systems of record),
    kill switches and detectors of one ``flightrec serve``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: Store | None = None
        self.wal: WriteAheadLog | None = None
        self.writer: BatchWriter | None = None
        self.rates: RateResolver | None = None
        self.rederive: RederiveJob | None = None
        self.pipeline: IngestPipeline | None = None
        self.grpc: GrpcReceiver | None = None
        self.rollback: RollbackService | None = None
        self.systems: SystemRegistry | None = None
        self.switches: KillSwitches | None = None
        self.detectors: DetectorRunner | None = None
        self.audit_heads: HeadKeeper | None = None
        self.evidence: Sequencer | None = None
        self.leader: LeaderElector | None = None
        self._executor: UndoExecutor | None = None

    def start(self) -> None:
        """Open the store, replay the WAL, start the writer and the gRPC receiver; undo on failure."""
        try:
            # The first campaign runs between the migrations and retention: only the leader sets the TTLs.
            self.store = open_store(self.settings.store_config(), retention=self._elect)
            assert self.leader is not None
            self.leader.on_elected = self._elected
            self.leader.start()  # renewing from now: the rest of the start (WAL replay, pricing) may outlast a lease
            self.store.holds.reload()  # a held object's traces linked since the last hold act are held from now
            # Each append's head is signed with the key from the data directory (outside the store).
            self.audit_heads = HeadKeeper(self.store.audit, keys.load_or_create(self.settings.audit_key_path()),
                                          self.settings.audit_head_path())
            self.store.audit.after_append = self.audit_heads.record
            # Every stored span and audit entry becomes a leaf of the evidence log; its roots are signed.
            self.evidence = Sequencer(self.store, self.audit_heads.key, self.settings.sequencer_config(),
                                      leader=self.leader.is_leader)
            self.evidence.start()
            self.wal = WriteAheadLog(self.settings.wal_config())
            self.writer = BatchWriter(
                self.wal,
                self.store,
                self.settings.writer_config(),
            )
            self.writer.start()
            self.rates = RateResolver(self.store, self.settings.rates_config(), leader=self.leader.is_leader)
            self.rates.start()
            self.rederive = RederiveJob(self.store, self.settings.default_tenant)
            if self.leader.is_leader():
                self._rederive_if_stale()
            self.pipeline = IngestPipeline(self.settings.intake_config(), self.wal, self.store)
            self.grpc = GrpcReceiver(self.pipeline, self.settings.host, self.settings.grpc_port)
            self.grpc.start()
            self.switches = KillSwitches(self.store)
            # The systems of record undo may call, from the settings, the demo records_url and the audit log's
            # registrations; wired once here, so every plan and every execution goes through the same registry.
            self._executor = UndoExecutor()
            self.systems = SystemRegistry.from_settings(self.settings, self.store)
            self.rollback = RollbackService(self.store, self._executor, emit=self._emit, registry=self.systems)
            self.detectors = DetectorRunner(
                self.store, self.settings.detectors_config(), PagerRoutes.from_config(self.settings.pager_config()),
                leader=self.leader.is_leader,
            )
            self.detectors.start(self.settings.detect_interval_s)
        except Exception:
            self.shutdown()
            raise
        log.info("flightrec: store %s, gRPC on %s", self.settings.store_config().target().describe(), self.grpc.address)

    def _elect(self, store: Store) -> bool:
        """Campaign once for the lease over the migrated store; answer whether this process leads."""
        self.leader = LeaderElector(store.leases, self.settings.leader_node(), self.settings.leader_config())
        return self.leader.campaign()

    def _rederive_if_stale(self) -> None:
        assert self.store is not None and self.rederive is not None
        state = self.store.meaning.state()
        if state is not None and state.stale:
            log.info("rules: stored spans were derived with other rules; re-deriving them in the background")
            self.rederive.start(self.store.config.rules)

    def _elected(self, term: int) -> None:
        """Taking over from another leader: its retention and re-derivation become this process's to finish."""
        assert self.store is not None
        self.store.apply_retention()
        if self.rederive is not None:  # else the start, still under way, checks once it made the job
            self._rederive_if_stale()

    def _emit(self, request: ExportTraceServiceRequest) -> None:
        """Spans Flight Recorder writes about itself (undo steps) take the agents' ingest path."""
        assert self.pipeline is not None
        self.pipeline.ingest(decode_body(request.SerializeToString(), "application/x-protobuf"), transport="internal")

    def shutdown(self) -> None:
        """Stop intake, flush the WAL into the store, close everything; safe to call twice.

        The lease is released first (after the leader's loops stop), so another process takes over at once."""
        if self.detectors is not None:
            self.detectors.shutdown()
            self.detectors = None
        if self.evidence is not None:
            self.evidence.shutdown()
        if self.rates is not None:
            self.rates.shutdown()
        if self.leader is not None:
            self.leader.shutdown()  # kept until the store closes: /api/health still says who leads meanwhile
        if self.pipeline is not None:
            self.pipeline.close_intake()
        if self.grpc is not None:
            self.grpc.shutdown()
            self.grpc = None
        if self.writer is not None:
            self.writer.shutdown()
            self.writer = None
        if self.rates is not None:
            self.rates.shutdown()
            self.rates = None
        if self.rederive is not None:
            self.rederive.wait(timeout=60)
            self.rederive = None
        if self.wal is not None:
            self.wal.close()
            self.wal = None
        if self.evidence is not None:
            self.evidence.shutdown()
            self.evidence = None
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        self.rollback = None
        self.systems = None
        self.audit_heads = None
        self.leader = None
        if self.store is not None:
            self.store.close()
            self.store = None
