-- PostgreSQL dialect of migrations/0006_license_changes_pruned.sql: license_changes
-- is pruned (adapters/license_feed.py): the rows written more than a day ago
-- go, oldest first, and through_seq says up to which seq rows may be gone. A
-- replica whose cursor is below it may have missed a change, and drops what
-- it holds about every license.
CREATE TABLE license_changes_pruned (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    through_seq BIGINT NOT NULL
);
INSERT INTO license_changes_pruned (id, through_seq) VALUES (1, 0);
CREATE INDEX ix_license_changes_changed_at ON license_changes (changed_at);
