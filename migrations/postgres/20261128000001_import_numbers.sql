-- `deployd events import` appends events that already carry their deploy
-- number (from another installation). The store assigns a number only
-- when the event asks for one (0); a number that is already there is kept
-- and moves the entity's counter up to it, so later creates go on after it.
CREATE OR REPLACE FUNCTION deployd_assign_deploy_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    entity text := NEW.payload -> 'DeployCreated' ->> 'entityId';
    given bigint := COALESCE((NEW.payload -> 'DeployCreated' ->> 'sequenceNumber')::bigint, 0);
    assigned bigint;
BEGIN
    IF entity IS NULL THEN
        RAISE EXCEPTION 'DeployCreated without entityId';
    END IF;
    IF given > 0 THEN
        INSERT INTO entity_deploy_counters AS c (entity_id, last_sequence)
        VALUES (entity, given)
        ON CONFLICT (entity_id) DO UPDATE SET last_sequence = GREATEST(c.last_sequence, given);
        RETURN NEW;
    END IF;
    INSERT INTO entity_deploy_counters AS c (entity_id, last_sequence)
    VALUES (entity, 1)
    ON CONFLICT (entity_id) DO UPDATE SET last_sequence = c.last_sequence + 1
    RETURNING last_sequence INTO assigned;
    NEW.payload := jsonb_set(NEW.payload, '{DeployCreated,sequenceNumber}', to_jsonb(assigned));
    RETURN NEW;
END
$$;
