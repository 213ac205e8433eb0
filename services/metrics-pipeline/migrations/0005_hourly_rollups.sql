-- One-hour rollups, folded from the one-minute rollups by a job once an hour has ended (and
-- again when a late batch lands in it), kept longer than the one-minute ones.
CREATE TABLE samples_1h (
    node_id   TEXT             NOT NULL,
    metric    SMALLINT         NOT NULL,
    labels    JSONB            NOT NULL,
    bucket_ms BIGINT           NOT NULL,
    min       DOUBLE PRECISION NOT NULL,
    max       DOUBLE PRECISION NOT NULL,
    sum       DOUBLE PRECISION NOT NULL,
    count     BIGINT           NOT NULL,
    last      DOUBLE PRECISION NOT NULL,
    last_ms   BIGINT           NOT NULL,
    PRIMARY KEY (node_id, metric, labels, bucket_ms)
);

CREATE INDEX samples_1h_bucket ON samples_1h (bucket_ms);

-- Hours whose one-minute rollups changed since they were last folded into samples_1h; written
-- in the transaction that stores each batch. Queries answer these hours from samples_1m, so
-- hourly answers are exact before the job has run.
CREATE TABLE rollup_dirty (hour_ms BIGINT PRIMARY KEY);

INSERT INTO rollup_dirty (hour_ms) SELECT DISTINCT (bucket_ms / 3600000) * 3600000 FROM samples_1m;
