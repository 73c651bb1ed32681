-- Items, as the API returns them. Ids are UUIDv7 (creation-ordered), so cursor
-- pagination is an index range scan on the primary key.
CREATE TABLE items (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description text        CHECK (length(description) <= 2000),
    version     bigint      NOT NULL CHECK (version >= 1),
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
