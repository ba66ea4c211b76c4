-- Every committed change to the bundles is announced on `fathom_policy_bundles` (payload `*`): policy
-- engines keep the active bundle and their evaluations in memory and drop them when told.
CREATE OR REPLACE FUNCTION fathom_policy_bundles_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fathom_policy_bundles', '*');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS fathom_policy_bundles_notify ON fathom_policy_bundles;
CREATE TRIGGER fathom_policy_bundles_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON fathom_policy_bundles
    FOR EACH STATEMENT EXECUTE FUNCTION fathom_policy_bundles_notify();
