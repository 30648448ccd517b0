-- Node lists filter by name prefix (`?q=rack12-`): a range on the byte order of the names,
-- which this index serves whatever the database's collation.
CREATE INDEX nodes_name_pattern ON nodes (name text_pattern_ops);
