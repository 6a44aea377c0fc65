-- The event store. The first seven columns are postgres-es 0.5's `events`
-- table, which cqrs-es reads and appends through; the rest make the table a
-- global log (DESIGN.md decision 3):
--   position     a global number (gaps possible: a rolled-back insert burns one)
--   tx_id        the appending transaction; readers order by (tx_id, position)
--                and read only below pg_snapshot_xmin(pg_current_snapshot()),
--                so a writer that took a lower number but commits later is
--                never skipped
--   recorded_at  when the event was appended
--   event_id     the event's own id (evt_ + ULID), the Nats-Msg-Id of the relay
CREATE FUNCTION deployd_ulid() RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    alphabet constant text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    millis bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
    -- 80 random bits: bytes of two v4 UUIDs that carry no version or variant bits
    r1 bytea := uuid_send(gen_random_uuid());
    r2 bytea := uuid_send(gen_random_uuid());
    bits bit(130);
    result text := '';
BEGIN
    bits := B'00'
        || ('x' || lpad(to_hex(millis), 12, '0'))::bit(48)
        || ('x' || encode(substring(r1 FROM 10 FOR 7) || substring(r2 FROM 1 FOR 3), 'hex'))::bit(80);
    FOR i IN 0..25 LOOP
        result := result || substr(alphabet, substring(bits FROM i * 5 + 1 FOR 5)::int + 1, 1);
    END LOOP;
    RETURN result;
END
$$;

CREATE TABLE events
(
    aggregate_type text COLLATE "C"              NOT NULL,
    aggregate_id   text COLLATE "C"              NOT NULL,
    sequence       bigint CHECK (sequence >= 0)  NOT NULL,
    event_type     text COLLATE "C"              NOT NULL,
    event_version  text COLLATE "C"              NOT NULL,
    payload        jsonb                         NOT NULL,
    metadata       jsonb                         NOT NULL,
    position       bigserial                     NOT NULL UNIQUE,
    tx_id          xid8                          NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz                   NOT NULL DEFAULT now(),
    event_id       text COLLATE "C"              NOT NULL UNIQUE DEFAULT 'evt_' || deployd_ulid(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_log_order ON events (tx_id, position);

-- postgres-es expects this table to exist; deployd never snapshots (the
-- 0.5.0 snapshot store applies new events twice).
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- An entity's deploys are numbered 1, 2, 3, ... with no gap and no repeat.
-- The number is assigned by the store inside the transaction that appends
-- DeployCreated, the way `position` is: the counter row is locked until that
-- transaction ends, so concurrent creates for one entity queue here, and a
-- rolled-back append rolls its number back too. The aggregate emits
-- sequenceNumber 0 ("to be assigned"); the stored event carries the number.
CREATE TABLE entity_deploy_counters
(
    entity_id     text COLLATE "C" PRIMARY KEY,
    last_sequence bigint NOT NULL
);

CREATE FUNCTION deployd_assign_deploy_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    entity text := NEW.payload -> 'DeployCreated' ->> 'entityId';
    assigned bigint;
BEGIN
    IF entity IS NULL THEN
        RAISE EXCEPTION 'DeployCreated without entityId';
    END IF;
    INSERT INTO entity_deploy_counters AS c (entity_id, last_sequence)
    VALUES (entity, 1)
    ON CONFLICT (entity_id) DO UPDATE SET last_sequence = c.last_sequence + 1
    RETURNING last_sequence INTO assigned;
    NEW.payload := jsonb_set(NEW.payload, '{DeployCreated,sequenceNumber}', to_jsonb(assigned));
    RETURN NEW;
END
$$;

CREATE TRIGGER events_assign_deploy_number
    BEFORE INSERT ON events
    FOR EACH ROW
    WHEN (NEW.aggregate_type = 'Deploy' AND NEW.event_type = 'DeployCreated')
    EXECUTE FUNCTION deployd_assign_deploy_number();

-- Wake tailing readers (projector, relay) as soon as a transaction that
-- appended events commits. NOTIFY is delivered at commit, once per
-- transaction and channel; readers also poll, so a lost wake-up only delays.
CREATE FUNCTION deployd_notify_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('deployd_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    FOR EACH STATEMENT
    EXECUTE FUNCTION deployd_notify_events();

-- One row per catch-up reader (projection, relay): the last (tx_id, position)
-- it has applied, written in the same transaction as its effects.
CREATE TABLE checkpoints
(
    name       text COLLATE "C" PRIMARY KEY,
    tx_id      xid8        NOT NULL DEFAULT '0',
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
