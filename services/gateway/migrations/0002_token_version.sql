-- A user's token version: access tokens carry it, and the gateway refuses a token whose
-- version is not the user's current one. Bumped when the user is disabled, changes role or
-- password, so their tokens stop at once instead of when they expire.
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
