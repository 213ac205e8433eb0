-- DORA: deployments as recorded (crate::dora), the commits each delivered, and the DevLake
-- claims that make a revision of a component one DevLake deployment however many clusters
-- and replicas see it.
CREATE TABLE deployments (
    id           TEXT     PRIMARY KEY,
    devlake_id   TEXT     NOT NULL,
    application  TEXT     NOT NULL,
    component    TEXT     NOT NULL,
    cluster      TEXT     NOT NULL,
    -- DeploymentEnvironment and DeploymentStatus numbers.
    environment  SMALLINT NOT NULL,
    status       SMALLINT NOT NULL,
    revision     TEXT     NOT NULL,
    deployed_ms  BIGINT   NOT NULL,
    recorded_ms  BIGINT   NOT NULL,
    -- Earliest author date among the commits, once resolved.
    started_ms   BIGINT,
    resolved     BOOLEAN  NOT NULL DEFAULT false,
    -- DevlakePushState number; the worker looks at PENDING rows once due_ms has passed (a
    -- claim moves due_ms past a lease, so a crash mid-work is picked up again).
    push_state   SMALLINT NOT NULL,
    due_ms       BIGINT   NOT NULL,
    attempts     INTEGER  NOT NULL DEFAULT 0,
    -- DevLake connections that accepted it already (never posted to twice).
    accepted     TEXT[]   NOT NULL DEFAULT '{}',
    -- The whole record (encoded Deployment).
    payload      BYTEA    NOT NULL
);

CREATE INDEX deployments_due ON deployments (due_ms) WHERE push_state = 1;
CREATE INDEX deployments_scope ON deployments (component, environment, cluster, deployed_ms);
CREATE INDEX deployments_time ON deployments (deployed_ms);

-- One row per commit a deployment delivered; lead time counts each commit at its first
-- successful deployment.
CREATE TABLE deployment_commits (
    deployment_id TEXT   NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    repo_url      TEXT   NOT NULL,
    sha           TEXT   NOT NULL,
    authored_ms   BIGINT NOT NULL,
    PRIMARY KEY (deployment_id, repo_url, sha)
);

CREATE INDEX deployment_commits_sha ON deployment_commits (repo_url, sha);

-- Who sends a DevLake deployment: the first deployment to claim its id; 'sent' once DevLake
-- accepted it, so the others with the same id are skipped.
CREATE TABLE devlake_claims (
    devlake_id    TEXT PRIMARY KEY,
    deployment_id TEXT NOT NULL,
    state         TEXT NOT NULL
);
