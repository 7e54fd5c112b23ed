-- The Cloud Controller upstream: what leasehold last saw of a resource upstream.

-- SHA-256 of CC's body (canonical JSON) when leasehold last read or wrote it; NULL before
-- the first read and with the local upstream. A different digest on the next read is drift:
-- a change made past leasehold, which bumps the version.
ALTER TABLE resources ADD COLUMN upstream_digest TEXT;
-- Set (1) when a write was sent upstream but its answer was lost (it may or may not have been
-- applied); the next read settles it and names it in the drift entry.
ALTER TABLE resources ADD COLUMN upstream_uncertain INTEGER NOT NULL DEFAULT 0
    CHECK (upstream_uncertain IN (0, 1));
