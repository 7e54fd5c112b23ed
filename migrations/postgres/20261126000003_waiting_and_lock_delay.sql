-- Waiting for a lease (first come, first served across instances) and lock-delay.

-- Lock-delay of a lease: after it ends by expiry or revocation (never a clean release),
-- nobody may acquire its resource for this long.
ALTER TABLE leases ADD COLUMN lock_delay_seconds integer NOT NULL DEFAULT 0
    CHECK (lock_delay_seconds BETWEEN 0 AND 60);
-- Until when the resource is in lock-delay (set when a lease with a delay expires or is revoked).
ALTER TABLE resources ADD COLUMN lock_delay_until timestamptz;

-- Running leasehold instances. Each refreshes alive_until every few seconds; an instance
-- that stops doing so has died, and its waiters no longer hold their place in any queue.
CREATE TABLE instances (
    id          uuid        PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    alive_until timestamptz NOT NULL
);

-- Acquires waiting for a lease. The queue order is seq, taken under the resource's lock,
-- so it is the order in which waiters arrived, on whichever instance.
CREATE TABLE waiters (
    id            uuid        PRIMARY KEY,
    resource_type text        NOT NULL,
    resource_guid uuid        NOT NULL,
    seq           bigserial   NOT NULL,
    holder        text        NOT NULL,
    instance_id   uuid        NOT NULL,
    -- The waiter gives up then (now + wait_seconds); later it no longer counts.
    deadline      timestamptz NOT NULL,
    FOREIGN KEY (resource_type, resource_guid) REFERENCES resources
);
CREATE INDEX waiters_queue ON waiters (resource_type, resource_guid, seq);

-- The sweep finds leases whose time ran out without anyone noticing.
CREATE INDEX leases_open_by_expiry ON leases (expires_at) WHERE ended_at IS NULL;
