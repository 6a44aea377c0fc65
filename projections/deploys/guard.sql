-- Claims event $2 of deploy $1: moves the row's applied sequence forward and
-- reports whether it did. An event already applied claims nothing.
UPDATE deploys SET event_sequence = $2 WHERE id = $1 AND event_sequence < $2
