-- Indexes for the list's common orders, so each is an ordered index scan
-- that stops after one page, first page or deep (the keyset seek is an
-- index range). `benches/list.rs` measures them and prints their plans;
-- `tests/list_indexes.rs` asserts the per-workspace plans.
--
-- Already there (20261127000002_read_model.sql): createdAt and
-- status+createdAt per workspace, createdAt per entity, and the unique
-- (entity_id, sequence_number) that serves sequenceNumber per entity (the
-- `id` tie-break becomes an Incremental Sort of one-row groups).
--
-- Plain CREATE INDEX, not CONCURRENTLY: sqlx runs a migration file as one
-- multi-statement query, and PostgreSQL refuses CONCURRENTLY inside that
-- implicit transaction. CREATE INDEX blocks only writes to `deploys` (the
-- projector waits; API reads go on), a few seconds per index at 1M rows.

-- sequenceNumber in one workspace (either direction: scanned backwards it
-- is `sequence_number ASC, id ASC`)
CREATE INDEX deploys_ws_sequence ON deploys (workspace_id, sequence_number DESC, id DESC);

-- A caller with several workspaces: `workspace_id IN (…)` cannot take its
-- order from the per-workspace indexes (one range per workspace, not merged),
-- so these give the order and filter the scope.
CREATE INDEX deploys_created ON deploys (created_at DESC, id DESC);
CREATE INDEX deploys_status_created ON deploys (status, created_at DESC, id DESC);

-- `total`: an exact count(*) of the scope, or of the scope and a status, as
-- an index-only scan of this small index (two low-cardinality keys, so
-- B-tree deduplication keeps it at about 7 bytes a row, against 165 bytes
-- in deploys_ws_created). Index-only scans skip the heap on pages the
-- visibility map marks all-visible: VACUUM (autovacuum, or the bench after
-- its bulk load) sets it; rows changed since are checked in the heap.
CREATE INDEX deploys_ws_status ON deploys (workspace_id, status);

-- An entity lives in one workspace; without this the planner multiplies the
-- selectivities of `entity_id = …` and `workspace_id IN (…)`, expects a
-- handful of rows and sorts them, instead of reading the entity's deploys
-- in order from deploys_entity_created.
CREATE STATISTICS deploys_entity_workspace (dependencies) ON entity_id, workspace_id FROM deploys;
