-- One-minute rollups, maintained in the transaction that stores each batch (batches are stored
-- once, so the rollups are exact), kept longer than the raw samples.
CREATE TABLE samples_1m (
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

CREATE INDEX samples_1m_bucket ON samples_1m (bucket_ms);
