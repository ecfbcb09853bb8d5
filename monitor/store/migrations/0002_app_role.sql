-- In production the service connects as ``monitor_app`` (docker/db/init-roles.sh), a role
-- that owns nothing. Whatever default privileges gave it, it may only read and append
-- to the audit trail. (The append-only trigger of 0001 refuses changes for every role.)
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitor_app') THEN
        REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM monitor_app;
        GRANT SELECT, INSERT ON audit TO monitor_app;
    END IF;
END $$;
REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM PUBLIC;
