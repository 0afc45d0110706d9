-- Live server processes: shards are shared fairly among the members whose heartbeat is recent;
-- the address lets a server forward a write to the owner of the shard it belongs to.
CREATE TABLE cluster_members (
    owner TEXT NOT NULL PRIMARY KEY,
    address TEXT NOT NULL,
    heartbeat_ms BIGINT NOT NULL,
    started_ms BIGINT NOT NULL
);

-- Which engine appended each event, with which fencing token: per execution the tokens never
-- go down, which is how a test (or an auditor) sees that a deposed owner wrote nothing.
ALTER TABLE events ADD COLUMN writer TEXT;
ALTER TABLE events ADD COLUMN range_id BIGINT;
