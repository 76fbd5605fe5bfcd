-- What the injection scanner has seen in a session's tool results: the
-- classes and severities given to policies on later calls of the same
-- session (`input.inbound`). `tainted` (since 0001) marks a session that
-- received content flagged high.
ALTER TABLE sessions ADD COLUMN inbound_findings TEXT NOT NULL DEFAULT '[]';

-- The lethal trifecta: the session has read content from a tool tagged
-- untrusted, and data from a tool tagged private (or a result holding a
-- data-protection finding).
ALTER TABLE sessions ADD COLUMN read_untrusted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN read_private INTEGER NOT NULL DEFAULT 0;
