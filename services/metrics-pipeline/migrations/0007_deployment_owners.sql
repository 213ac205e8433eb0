-- The owner of a Persys cloud rollout (the workload's owner), so members see only their own;
-- empty for deployments from ArgoCD, CI jobs or admins, which every role sees.
ALTER TABLE deployments ADD COLUMN owner_id TEXT NOT NULL DEFAULT '';
CREATE INDEX deployments_owner ON deployments (owner_id) WHERE owner_id <> '';
