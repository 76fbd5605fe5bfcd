-- An agent frozen by a blast-radius window: every call is refused until an
-- admin unfreezes it. Kept apart from `status`, which admins set.
ALTER TABLE agents ADD COLUMN frozen_at TEXT;
ALTER TABLE agents ADD COLUMN frozen_reason TEXT;
