-- One account per person (issue 11): a login linked to a person may act on what is
-- dispatched to that person and the audit names them, so two accounts must never
-- stand for the same person.
--
-- Rows written before this rule: an empty link is no link, and where several
-- accounts claim one person the oldest keeps the link and the others lose it (the
-- safe direction: they keep their own grid scope but no longer act as that person).
UPDATE users SET person_id = NULL WHERE person_id = '';
UPDATE users u SET person_id = NULL
 WHERE person_id IS NOT NULL
   AND EXISTS (SELECT 1 FROM users o WHERE o.person_id = u.person_id AND o.id < u.id);

ALTER TABLE users ADD CONSTRAINT users_person_not_empty CHECK (person_id <> '');
DROP INDEX IF EXISTS users_person_idx;
CREATE UNIQUE INDEX users_person_key ON users (person_id) WHERE person_id IS NOT NULL;
