-- Authentication: the principal (UAA client or user, or a static token's principal) that took
-- a lease. Renewals, releases and fenced writes must come from the same principal or an admin.
-- NULL when leasehold runs without authentication.
ALTER TABLE leases ADD COLUMN principal text;
