-- The harness lists one recipient's emails (`/__harness__/emails?recipient=`);
-- support staff ask the same question.
CREATE INDEX idx_email_recipient ON email_log (recipient);
