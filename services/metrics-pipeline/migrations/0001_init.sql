-- Batches stored, one row per (node, batch sequence): what makes a re-sent batch a duplicate.
CREATE TABLE ingest_batches (
    node_id     TEXT   NOT NULL,
    batch_seq   BIGINT NOT NULL,
    samples     INT    NOT NULL,
    dropped     BIGINT NOT NULL,
    received_ms BIGINT NOT NULL,
    PRIMARY KEY (node_id, batch_seq)
);

-- Raw samples, one row per metric and label set, partitioned by day (samples_YYYYMMDD,
-- created on demand at ingest and dropped past the retention).
CREATE TABLE samples (
    node_id TEXT             NOT NULL,
    metric  SMALLINT         NOT NULL,
    labels  JSONB            NOT NULL,
    time_ms BIGINT           NOT NULL,
    value   DOUBLE PRECISION NOT NULL
) PARTITION BY RANGE (time_ms);

CREATE INDEX samples_node_metric_time ON samples (node_id, metric, time_ms);

-- The newest sample of each node, whole, for LatestHostMetrics.
CREATE TABLE latest_host (
    node_id TEXT   PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    payload BYTEA  NOT NULL
);
