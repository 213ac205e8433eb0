-- ChatOps: every host command and container action asked of a node (crate::commands), run,
-- refused or still running: who, where, what, how it ended.
CREATE TABLE command_history (
    id          TEXT    PRIMARY KEY,
    node_id     TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    started_ms  BIGINT  NOT NULL,
    -- The whole record (encoded CommandRecord).
    payload     BYTEA   NOT NULL
);

CREATE INDEX command_history_newest ON command_history (started_ms DESC, id DESC);
CREATE INDEX command_history_node ON command_history (node_id, started_ms DESC, id DESC);
