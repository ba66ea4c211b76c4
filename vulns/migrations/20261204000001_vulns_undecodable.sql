-- Images whose stored document this release could not decode. They get no row in fathom_vuln_images, so
-- every reader sees "vulnerability data unavailable" for them (never a clean result), and they are not
-- tried again every round: only when re-analyzed (analyzed_at moves) or under another release (decoder).
CREATE TABLE IF NOT EXISTS fathom_vuln_undecodable (
    manifest_digest text        PRIMARY KEY,
    analyzed_at     timestamptz NOT NULL,
    decoder         text        NOT NULL,
    error           text        NOT NULL,
    seen_at         timestamptz NOT NULL DEFAULT now()
);
