-- PostgreSQL dialect of migrations/0004_email_recipient_index.sql.
CREATE INDEX idx_email_recipient ON email_log (recipient);
