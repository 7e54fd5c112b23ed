-- leasehold's schema, SQLite dialect (the embedded store; migrations/postgres holds the same
-- schema for PostgreSQL). Every row that matters for a resource hangs off its `resources` row.
-- One leasehold process serves a SQLite file (it holds an advisory lock on `<file>.lock`), and
-- every mutation and lease operation on a resource runs in that process's critical section for
-- the resource (an in-process lock, then a `BEGIN IMMEDIATE` transaction), so they run one at a
-- time.
--
-- Representations (STRICT tables, so SQLite enforces the column types):
--   * UUIDs are TEXT in the lower-case hyphenated form (36 characters), so they compare and
--     sort like PostgreSQL's uuid (byte order);
--   * timestamps are INTEGER microseconds since the Unix epoch, UTC: PostgreSQL's timestamptz
--     resolution, and exact ordering and comparison
--     (read them with `strftime('%Y-%m-%dT%H:%M:%fZ', at / 1e6, 'unixepoch')`);
--   * JSON is TEXT holding a JSON object; booleans are INTEGER 0 or 1.

CREATE TABLE resources (
    resource_type TEXT    NOT NULL,
    resource_guid TEXT    NOT NULL CHECK (length(resource_guid) = 36 AND resource_guid = lower(resource_guid)),
    -- The strong ETag: +1 on every change made through leasehold (and on upstream drift).
    version       INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0),
    -- The last fencing token issued. A grant takes fence + 1 inside the resource's critical
    -- section, so tokens strictly increase per resource and are never reused, across restarts too.
    fence         INTEGER NOT NULL DEFAULT 0 CHECK (fence >= 0),
    labels        TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(labels) AND json_type(labels) = 'object'),
    annotations   TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(annotations) AND json_type(annotations) = 'object'),
    -- Tombstone of a conditional DELETE: once set the resource answers 410 for ever.
    deleted_at    INTEGER,
    -- The last history seq used. Entries are numbered inside the critical section, so seq
    -- follows commit order.
    history_seq   INTEGER NOT NULL DEFAULT 0 CHECK (history_seq >= 0),
    PRIMARY KEY (resource_type, resource_guid)
) STRICT;

CREATE TABLE leases (
    id            TEXT    PRIMARY KEY CHECK (length(id) = 36 AND id = lower(id)),
    resource_type TEXT    NOT NULL,
    resource_guid TEXT    NOT NULL,
    holder        TEXT    NOT NULL CHECK (length(holder) BETWEEN 1 AND 128),
    fencing_token INTEGER NOT NULL CHECK (fencing_token > 0),
    ttl_seconds   INTEGER NOT NULL CHECK (ttl_seconds BETWEEN 1 AND 3600),
    acquired_at   INTEGER NOT NULL,
    renewed_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL CHECK (expires_at > renewed_at),
    -- NULL while the lease is open. An open lease past expires_at is expired already; the
    -- next operation on its resource records that (ended_at = expires_at).
    ended_at      INTEGER,
    end_reason    TEXT CHECK (end_reason IN ('released', 'expired', 'revoked')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    FOREIGN KEY (resource_type, resource_guid) REFERENCES resources,
    -- A token names exactly one grant of its resource.
    UNIQUE (resource_type, resource_guid, fencing_token)
) STRICT;

-- At most one open lease per resource, whatever the code above does.
CREATE UNIQUE INDEX leases_one_open_per_resource
    ON leases (resource_type, resource_guid) WHERE ended_at IS NULL;
-- The operator listing pages newest first by (acquired_at, id).
CREATE INDEX leases_by_acquired ON leases (acquired_at DESC, id DESC);
CREATE INDEX leases_by_holder ON leases (holder, acquired_at DESC, id DESC);

CREATE TABLE history (
    resource_type TEXT    NOT NULL,
    resource_guid TEXT    NOT NULL,
    seq           INTEGER NOT NULL CHECK (seq > 0),
    at            INTEGER NOT NULL,
    event         TEXT    NOT NULL CHECK (event IN (
                      'lease-granted', 'lease-renewed', 'lease-released', 'lease-expired',
                      'lease-revoked', 'metadata-changed', 'drift', 'deleted')),
    actor         TEXT,
    lease_id      TEXT,
    fencing_token INTEGER,
    -- The resource's version after the event.
    version       INTEGER NOT NULL,
    detail        TEXT CHECK (detail IS NULL OR json_valid(detail)),
    PRIMARY KEY (resource_type, resource_guid, seq),
    FOREIGN KEY (resource_type, resource_guid) REFERENCES resources
) STRICT;
