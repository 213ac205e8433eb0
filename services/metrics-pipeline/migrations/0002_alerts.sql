-- Alert rules, whole (encoded AlertRule).
CREATE TABLE alert_rules (
    id         TEXT   PRIMARY KEY,
    payload    BYTEA  NOT NULL,
    created_ms BIGINT NOT NULL
);

-- Alerts, whole (encoded Alert), with what queries filter on. One open alert per rule and
-- subject (node and series labels).
CREATE TABLE alerts (
    id         TEXT     PRIMARY KEY,
    rule_id    TEXT     NOT NULL,
    node_id    TEXT     NOT NULL,
    subject    TEXT     NOT NULL,
    state      SMALLINT NOT NULL,
    severity   SMALLINT NOT NULL,
    open       BOOLEAN  NOT NULL,
    payload    BYTEA    NOT NULL,
    updated_ms BIGINT   NOT NULL
);

CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_id, subject) WHERE open;
CREATE INDEX alerts_updated ON alerts (updated_ms);
