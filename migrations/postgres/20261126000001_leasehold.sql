-- leasehold's schema. Every row that matters for a resource hangs off its `resources` row,
-- and that row is the per-resource lock: every mutation and lease operation on a resource
-- first locks it, so they run one at a time across all leasehold instances sharing this database.

CREATE TABLE resources (
    resource_type text   NOT NULL,
    resource_guid uuid   NOT NULL,
    -- The strong ETag: +1 on every change made through leasehold (and on upstream drift).
    version       bigint NOT NULL DEFAULT 0 CHECK (version >= 0),
    -- The last fencing token issued. A grant takes fence + 1 under the row lock, so tokens
    -- strictly increase per resource and are never reused, across restarts too.
    fence         bigint NOT NULL DEFAULT 0 CHECK (fence >= 0),
    labels        jsonb  NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
    annotations   jsonb  NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(annotations) = 'object'),
    -- Tombstone of a conditional DELETE: once set the resource answers 410 for ever.
    deleted_at    timestamptz,
    -- The last history seq used. Entries are numbered under the row lock, so seq follows commit order.
    history_seq   bigint NOT NULL DEFAULT 0 CHECK (history_seq >= 0),
    PRIMARY KEY (resource_type, resource_guid)
);

CREATE TABLE leases (
    id            uuid        PRIMARY KEY,
    resource_type text        NOT NULL,
    resource_guid uuid        NOT NULL,
    holder        text        NOT NULL CHECK (char_length(holder) BETWEEN 1 AND 128),
    fencing_token bigint      NOT NULL CHECK (fencing_token > 0),
    ttl_seconds   integer     NOT NULL CHECK (ttl_seconds BETWEEN 1 AND 3600),
    acquired_at   timestamptz NOT NULL,
    renewed_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL CHECK (expires_at > renewed_at),
    -- NULL while the lease is open. An open lease past expires_at is expired already; the
    -- next operation on its resource records that (ended_at = expires_at).
    ended_at      timestamptz,
    end_reason    text CHECK (end_reason IN ('released', 'expired', 'revoked')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    FOREIGN KEY (resource_type, resource_guid) REFERENCES resources,
    -- A token names exactly one grant of its resource.
    UNIQUE (resource_type, resource_guid, fencing_token)
);

-- At most one open lease per resource, whatever the code above does.
CREATE UNIQUE INDEX leases_one_open_per_resource
    ON leases (resource_type, resource_guid) WHERE ended_at IS NULL;
-- The operator listing pages newest first by (acquired_at, id).
CREATE INDEX leases_by_acquired ON leases (acquired_at DESC, id DESC);
CREATE INDEX leases_by_holder ON leases (holder, acquired_at DESC, id DESC);

CREATE TABLE history (
    resource_type text        NOT NULL,
    resource_guid uuid        NOT NULL,
    seq           bigint      NOT NULL CHECK (seq > 0),
    at            timestamptz NOT NULL,
    event         text        NOT NULL CHECK (event IN (
                      'lease-granted', 'lease-renewed', 'lease-released', 'lease-expired',
                      'lease-revoked', 'metadata-changed', 'drift', 'deleted')),
    actor         text,
    lease_id      uuid,
    fencing_token bigint,
    -- The resource's version after the event.
    version       bigint      NOT NULL,
    detail        jsonb,
    PRIMARY KEY (resource_type, resource_guid, seq),
    FOREIGN KEY (resource_type, resource_guid) REFERENCES resources
);
