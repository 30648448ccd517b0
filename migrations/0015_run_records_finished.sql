-- The overview's charts read the runs finished in the last hour. Records are written in
-- finishing order, so a BRIN index (a few pages, next to nothing to keep up) finds them.
CREATE INDEX run_records_finished ON run_records USING brin (finished_at);
