-- The pipeline on SQLite (the all-in-one stack): the tables of ../migrations as of 0008, in
-- one file. Differences from PostgreSQL: labels are canonical JSON text (the sorted map as
-- serde_json writes it); raw samples are one table (retention deletes whole days instead of
-- dropping partitions); a deployment's accepted connections are a JSON array.

CREATE TABLE ingest_batches (
    node_id     TEXT    NOT NULL,
    batch_seq   INTEGER NOT NULL,
    samples     INTEGER NOT NULL,
    dropped     INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (node_id, batch_seq)
);
CREATE INDEX ingest_batches_received ON ingest_batches (received_ms);

CREATE TABLE samples (
    node_id TEXT    NOT NULL,
    metric  INTEGER NOT NULL,
    labels  TEXT    NOT NULL,
    time_ms INTEGER NOT NULL,
    value   REAL    NOT NULL
);
CREATE INDEX samples_node_metric_time ON samples (node_id, metric, time_ms);
CREATE INDEX samples_time ON samples (time_ms);

CREATE TABLE latest_host (
    node_id TEXT    PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    payload BLOB    NOT NULL
);

CREATE TABLE alert_rules (
    id         TEXT    PRIMARY KEY,
    payload    BLOB    NOT NULL,
    created_ms INTEGER NOT NULL
);

CREATE TABLE alerts (
    id         TEXT    PRIMARY KEY,
    rule_id    TEXT    NOT NULL,
    node_id    TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    state      INTEGER NOT NULL,
    severity   INTEGER NOT NULL,
    open       BOOLEAN NOT NULL,
    payload    BLOB    NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_id, subject) WHERE open;
CREATE INDEX alerts_updated ON alerts (updated_ms);

CREATE TABLE samples_1m (
    node_id   TEXT    NOT NULL,
    metric    INTEGER NOT NULL,
    labels    TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,
    min       REAL    NOT NULL,
    max       REAL    NOT NULL,
    sum       REAL    NOT NULL,
    count     INTEGER NOT NULL,
    last      REAL    NOT NULL,
    last_ms   INTEGER NOT NULL,
    PRIMARY KEY (node_id, metric, labels, bucket_ms)
);
CREATE INDEX samples_1m_bucket ON samples_1m (bucket_ms);

CREATE TABLE samples_1h (
    node_id   TEXT    NOT NULL,
    metric    INTEGER NOT NULL,
    labels    TEXT    NOT NULL,
    bucket_ms INTEGER NOT NULL,
    min       REAL    NOT NULL,
    max       REAL    NOT NULL,
    sum       REAL    NOT NULL,
    count     INTEGER NOT NULL,
    last      REAL    NOT NULL,
    last_ms   INTEGER NOT NULL,
    PRIMARY KEY (node_id, metric, labels, bucket_ms)
);
CREATE INDEX samples_1h_bucket ON samples_1h (bucket_ms);

CREATE TABLE rollup_dirty (hour_ms INTEGER PRIMARY KEY);

CREATE TABLE notifications (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id     TEXT    NOT NULL,
    transition   TEXT    NOT NULL,
    channel      INTEGER NOT NULL,
    channel_spec BLOB    NOT NULL,
    alert        BLOB    NOT NULL,
    created_ms   INTEGER NOT NULL,
    due_ms       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    delivered_ms INTEGER,
    failed_ms    INTEGER,
    last_error   TEXT    NOT NULL DEFAULT '',
    UNIQUE (alert_id, transition, channel)
);
CREATE INDEX notifications_due ON notifications (due_ms) WHERE delivered_ms IS NULL AND failed_ms IS NULL;

CREATE TABLE silences (
    id         TEXT    PRIMARY KEY,
    payload    BLOB    NOT NULL,
    starts_ms  INTEGER NOT NULL,
    ends_ms    INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX silences_ends ON silences (ends_ms);

CREATE TABLE deployments (
    id           TEXT    PRIMARY KEY,
    devlake_id   TEXT    NOT NULL,
    application  TEXT    NOT NULL,
    component    TEXT    NOT NULL,
    cluster      TEXT    NOT NULL,
    environment  INTEGER NOT NULL,
    status       INTEGER NOT NULL,
    revision     TEXT    NOT NULL,
    deployed_ms  INTEGER NOT NULL,
    recorded_ms  INTEGER NOT NULL,
    started_ms   INTEGER,
    resolved     BOOLEAN NOT NULL DEFAULT 0,
    push_state   INTEGER NOT NULL,
    due_ms       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    -- JSON array of DevLake connection ids.
    accepted     TEXT    NOT NULL DEFAULT '[]',
    payload      BLOB    NOT NULL,
    owner_id     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX deployments_due ON deployments (due_ms) WHERE push_state = 1;
CREATE INDEX deployments_scope ON deployments (component, environment, cluster, deployed_ms);
CREATE INDEX deployments_time ON deployments (deployed_ms);
CREATE INDEX deployments_owner ON deployments (owner_id) WHERE owner_id <> '';

CREATE TABLE deployment_commits (
    deployment_id TEXT    NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    repo_url      TEXT    NOT NULL,
    sha           TEXT    NOT NULL,
    authored_ms   INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, repo_url, sha)
);
CREATE INDEX deployment_commits_sha ON deployment_commits (repo_url, sha);

CREATE TABLE devlake_claims (
    devlake_id    TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL,
    state         TEXT NOT NULL
);

CREATE TABLE command_history (
    id          TEXT    PRIMARY KEY,
    node_id     TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    started_ms  INTEGER NOT NULL,
    payload     BLOB    NOT NULL
);
CREATE INDEX command_history_newest ON command_history (started_ms DESC, id DESC);
CREATE INDEX command_history_node ON command_history (node_id, started_ms DESC, id DESC);
