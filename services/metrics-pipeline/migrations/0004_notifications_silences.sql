-- The notification outbox: one row per alert, transition and channel, written in the
-- transaction that stores the alert's change, delivered at least once by the dispatcher
-- (crate::notify). The unique key makes enqueueing idempotent (a transition is never queued
-- twice), and a claim moves `due_ms` past a lease, so a delivery cut short by a crash is made
-- again once the lease runs out.
CREATE TABLE notifications (
    id           BIGSERIAL PRIMARY KEY,
    alert_id     TEXT      NOT NULL,
    -- 'firing', 'resolved' or 'repeat-<n>'.
    transition   TEXT      NOT NULL,
    -- Index of the channel in the rule's notification_channels.
    channel      INTEGER   NOT NULL,
    -- The channel (encoded NotificationChannel, with its secret) and the alert as it was at the
    -- transition (encoded Alert).
    channel_spec BYTEA     NOT NULL,
    alert        BYTEA     NOT NULL,
    created_ms   BIGINT    NOT NULL,
    due_ms       BIGINT    NOT NULL,
    attempts     INTEGER   NOT NULL DEFAULT 0,
    delivered_ms BIGINT,
    -- Set when delivery gave up (a 4xx answer, or retried past the give-up time).
    failed_ms    BIGINT,
    last_error   TEXT      NOT NULL DEFAULT '',
    UNIQUE (alert_id, transition, channel)
);

CREATE INDEX notifications_due ON notifications (due_ms) WHERE delivered_ms IS NULL AND failed_ms IS NULL;

-- Silences, whole (encoded Silence), with when they are in force: from starts_ms until
-- ends_ms (ends_at, or the time it was expired early).
CREATE TABLE silences (
    id         TEXT   PRIMARY KEY,
    payload    BYTEA  NOT NULL,
    starts_ms  BIGINT NOT NULL,
    ends_ms    BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE INDEX silences_ends ON silences (ends_ms);
