-- The time index of the event log as a block-range (BRIN) index instead of a B-tree.
--
-- Events are appended in time order, and the only question asked by time is expiry's "which
-- events are older than the retention" (`at < ...`), which a summary of each range of pages
-- answers as well as a B-tree entry per event. Every event wrote that entry; at fleet scale
-- that is half a million entries per million noderole changes, on the hottest insert path.
-- (Measured with the annealer's event mix: inserting events about 12 % cheaper.)
-- Builds before this one do not name this index, so they serve this schema unchanged.
DROP INDEX events_at;
CREATE INDEX events_at ON events USING brin (at);
