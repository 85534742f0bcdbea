-- What `catalog apply` last wrote of each entry (docs/operations.md,
-- "Applying a catalog"): a hash of the entry as written in the file, so
-- that an apply skips the entries that did not change and costs what
-- changed. NULL (adopted, or applied before this) counts as changed once.
ALTER TABLE series ADD COLUMN catalog_hash text;
ALTER TABLE datasets ADD COLUMN catalog_hash text;
ALTER TABLE metrics ADD COLUMN catalog_hash text;
