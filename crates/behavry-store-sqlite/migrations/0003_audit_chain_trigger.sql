-- The chain head follows every appended event inside the INSERT itself, so
-- a batch of events is one atomic statement: the rows and the head can never
-- disagree, and appending needs no explicit transaction.
CREATE TRIGGER audit_events_advance_head AFTER INSERT ON audit_events
BEGIN
    UPDATE audit_chain_heads
       SET last_seq = NEW.seq, last_hash = NEW.event_hash, updated_at = NEW.timestamp
     WHERE tenant_id = NEW.tenant_id;
END;
