-- Tamper evidence: every event carries a SHA-256 chained to the previous
-- event of its stream (same aggregate_type and aggregate_id, sequence - 1):
--
--   hash = sha256(previous hash, or 32 zero bytes for the first event
--                 || canonical bytes of the event)
--
-- The canonical bytes are, for each of aggregate_type, aggregate_id,
-- sequence (decimal text), event_type, event_version, payload::text,
-- metadata::text and event_id, in that order: the field's UTF-8 length as a
-- 4-byte big-endian integer, then its UTF-8 bytes. jsonb::text is
-- PostgreSQL's normalised rendering (sorted keys, fixed spacing), so the
-- bytes do not depend on how the writer serialised the JSON.
-- `deployd audit verify` recomputes the same bytes in Rust
-- (src/audit/chain.rs).
ALTER TABLE events ADD COLUMN hash bytea;

CREATE FUNCTION deployd_event_canonical(
    aggregate_type text, aggregate_id text, sequence bigint, event_type text,
    event_version text, payload jsonb, metadata jsonb, event_id text
) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(int4send(octet_length(f)) || convert_to(f, 'UTF8'), ''::bytea ORDER BY n)
    FROM unnest(ARRAY[aggregate_type, aggregate_id, sequence::text, event_type, event_version,
                      payload::text, metadata::text, event_id]) WITH ORDINALITY AS u(f, n)
$$;

-- Runs after events_assign_deploy_number (same-timing triggers fire in name
-- order), so it hashes the payload as stored, with its assigned number.
CREATE FUNCTION deployd_event_hash() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous bytea;
BEGIN
    SELECT e.hash INTO previous FROM events e
    WHERE e.aggregate_type = NEW.aggregate_type AND e.aggregate_id = NEW.aggregate_id
      AND e.sequence = NEW.sequence - 1;
    NEW.hash := sha256(
        COALESCE(previous, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
        || deployd_event_canonical(NEW.aggregate_type, NEW.aggregate_id, NEW.sequence,
                                   NEW.event_type, NEW.event_version, NEW.payload,
                                   NEW.metadata, NEW.event_id));
    RETURN NEW;
END
$$;

-- Backfill what is already stored, stream by stream in sequence order.
DO $$
DECLARE
    e record;
    previous bytea;
    stream text[] := NULL;
BEGIN
    FOR e IN SELECT * FROM events ORDER BY aggregate_type, aggregate_id, sequence LOOP
        IF stream IS DISTINCT FROM ARRAY[e.aggregate_type, e.aggregate_id] THEN
            previous := NULL;
            stream := ARRAY[e.aggregate_type, e.aggregate_id];
        END IF;
        previous := sha256(
            COALESCE(previous, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea)
            || deployd_event_canonical(e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                                       e.event_version, e.payload, e.metadata, e.event_id));
        UPDATE events SET hash = previous
        WHERE aggregate_type = e.aggregate_type AND aggregate_id = e.aggregate_id
          AND sequence = e.sequence;
    END LOOP;
END
$$;

CREATE TRIGGER events_zz_hash_chain
    BEFORE INSERT ON events
    FOR EACH ROW
    EXECUTE FUNCTION deployd_event_hash();
