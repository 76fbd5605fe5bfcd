-- What the injection scanner has seen in a session's tool results: the
-- classes and severities given to policies on later calls of the same
-- session (`input.inbound`). `tainted` (since 0001) marks a session that
-- received content flagged high.
ALTER TABLE sessions ADD COLUMN inbound_findings TEXT NOT NULL DEFAULT '[]';
