-- What an agent principal may speak for besides its agent names (issue 10): the services
-- (resource service.name) and the tenant its spans may claim. Empty means not restricted.
ALTER TABLE ${db}.principals ${on_cluster} ADD COLUMN IF NOT EXISTS Services Array(String) AFTER Agents;
ALTER TABLE ${db}.principals ${on_cluster} ADD COLUMN IF NOT EXISTS Tenant String DEFAULT '' AFTER Services;
