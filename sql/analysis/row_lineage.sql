-- The full path of one problem (e.g. a split row) through every stage, one JSON row per record:
--   1 source rows       raw_problems rows of the problem, and of the duplicates folded into it
--   2 dedupe cluster    its unique_problems row and the duplicate_problems it represents
--   3 contamination     every contamination hit, and a 'check' summary (hits, in clean_problems)
--   4 pass rates        pass_rates rows under every model, sampling setting and shard
--   5 samples           distillations (prompt/text/reasoning cut to 300 characters)
--   6 verdicts          verified_distillations of those samples
--   7 splits            its stage1_sft / stage2_sft rows (without messages)
--   8 selection         the lineage rows (params) of the split runs that produced them
--                       (with the DuckLake snapshot_id each one committed: run this query on the
--                       data as of that snapshot, `make sql SNAPSHOT=<id>`, to see the inputs as
--                       they were when the split was built)
--
-- @param problem_id VARCHAR: the problem to trace
-- @param generation_id VARCHAR: or a teacher sample; used when problem_id is not set
--
-- Columns: step, record (table name), row (JSON of the record)
WITH target AS (
    SELECT coalesce(getvariable('problem_id')::VARCHAR,
                    (SELECT problem_id FROM distillations WHERE generation_id = getvariable('generation_id')::VARCHAR)) AS pid
),
samples AS (
    SELECT * REPLACE (left(prompt, 300) AS prompt, left(text, 300) AS text, left(reasoning, 300) AS reasoning)
    FROM distillations WHERE problem_id = (SELECT pid FROM target)
),
split_rows AS (
    SELECT 'stage1_sft' AS split, run_id, to_json(s) AS row FROM (SELECT * EXCLUDE (messages) FROM stage1_sft) s
    WHERE problem_id = (SELECT pid FROM target)
    UNION ALL
    SELECT 'stage2_sft', run_id, to_json(s) FROM (SELECT * EXCLUDE (messages) FROM stage2_sft) s
    WHERE problem_id = (SELECT pid FROM target)
),
trail AS (
SELECT 1 AS step, 'raw_problems' AS record, to_json(r) AS row
FROM raw_problems r WHERE problem_id = (SELECT pid FROM target)
UNION ALL
SELECT 1, 'raw_problems (duplicate)', to_json(r)
FROM raw_problems r JOIN duplicate_problems d ON d.source = r.source AND d.source_row = r.source_row
WHERE d.cluster_id = (SELECT pid FROM target)
UNION ALL
SELECT 2, 'unique_problems', to_json(u) FROM unique_problems u WHERE problem_id = (SELECT pid FROM target)
UNION ALL
SELECT 2, 'duplicate_problems', to_json(d) FROM duplicate_problems d WHERE cluster_id = (SELECT pid FROM target)
UNION ALL
SELECT 3, 'contamination', to_json(c) FROM contamination c WHERE problem_id = (SELECT pid FROM target)
UNION ALL
SELECT 3, 'contamination check', to_json({
    'hits': (SELECT count(*) FROM contamination WHERE problem_id = (SELECT pid FROM target)),
    'in_clean_problems': EXISTS (SELECT 1 FROM clean_problems WHERE problem_id = (SELECT pid FROM target))})
WHERE (SELECT pid FROM target) IS NOT NULL
UNION ALL
SELECT 4, 'pass_rates', to_json(p) FROM pass_rates p WHERE problem_id = (SELECT pid FROM target)
UNION ALL
SELECT 5, 'distillations', to_json(s) FROM samples s
UNION ALL
SELECT 6, 'verified_distillations', to_json(v)
FROM verified_distillations v WHERE problem_id = (SELECT pid FROM target)
UNION ALL
SELECT 7, split, row FROM split_rows
UNION ALL
SELECT 8, 'lineage', to_json(l)
FROM lineage l JOIN (SELECT DISTINCT split, run_id FROM split_rows) s
  ON l.table_name = s.split AND l.run_id = s.run_id
)
SELECT step, record, row FROM trail ORDER BY step, record, row::VARCHAR
