-- Waiting for a lease (first come, first served) and lock-delay.

-- Lock-delay of a lease: after it ends by expiry or revocation (never a clean release),
-- nobody may acquire its resource for this long.
ALTER TABLE leases ADD COLUMN lock_delay_seconds INTEGER NOT NULL DEFAULT 0
    CHECK (lock_delay_seconds BETWEEN 0 AND 60);
-- Until when the resource is in lock-delay (set when a lease with a delay expires or is revoked).
ALTER TABLE resources ADD COLUMN lock_delay_until INTEGER;

-- Running leasehold instances (with SQLite: this process, and earlier processes on the same
-- file that crashed). Each refreshes alive_until every few seconds; an instance that stops
-- doing so has died, and its waiters no longer hold their place in any queue.
CREATE TABLE instances (
    id          TEXT    PRIMARY KEY CHECK (length(id) = 36 AND id = lower(id)),
    started_at  INTEGER NOT NULL,
    alive_until INTEGER NOT NULL
) STRICT;

-- Acquires waiting for a lease. The queue order is seq, taken inside the resource's critical
-- section, so it is the order in which waiters arrived. AUTOINCREMENT makes seq the rowid and
-- never hands out a number twice, even after the newest waiter left (PostgreSQL: bigserial).
CREATE TABLE waiters (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE CHECK (length(id) = 36 AND id = lower(id)),
    resource_type TEXT    NOT NULL,
    resource_guid TEXT    NOT NULL,
    holder        TEXT    NOT NULL,
    instance_id   TEXT    NOT NULL,
    -- The waiter gives up then (now + wait_seconds); later it no longer counts.
    deadline      INTEGER NOT NULL,
    FOREIGN KEY (resource_type, resource_guid) REFERENCES resources
) STRICT;
CREATE INDEX waiters_queue ON waiters (resource_type, resource_guid, seq);
CREATE INDEX waiters_by_instance ON waiters (instance_id);

-- The sweep finds leases whose time ran out without anyone noticing.
CREATE INDEX leases_open_by_expiry ON leases (expires_at) WHERE ended_at IS NULL;
