-- Per-source yield funnel: how many problems survive each step of the pipeline.
--   1 raw          rows in raw_problems (before dedupe, so exact copies count)
--   2 unique       unique_problems (one per dedupe cluster)
--   3 clean        clean_problems (not contaminated)
--   4 scored       clean problems with a pass rate under the difficulty model (reference parsed)
--   5 passed_difficulty   pass rate < alpha
--   6 distilled    ... that have at least one teacher sample
--   7 verified     ... that have a usable sample (distillation_samples.usable: verified correct,
--                  finish_reason stop, format_ok, non-empty reasoning): the stage-1 candidates before caps
--   8 stage1_sft   rows of the stage-1 split
--   9 stage2_sft   rows of the stage-2 split
-- From step 2 on a problem counts for the source of its cluster's representative, so a source
-- whose rows were mostly cross-source duplicates shrinks at step 2. Source '(all)' is the total;
-- source '(all <domain>)' the total of one domain (math, code, mcq, puzzle).
--
-- @param model VARCHAR: the difficulty model as stored in pass_rates.model
--   (default: the difficulty model of the latest stage1_sft run, else every model)
-- @param alpha DOUBLE: the difficulty threshold (default: alpha of the latest stage1_sft run, else 0.5)
--
-- Columns: domain, source, step, stage, problems, pct_of_raw, pct_of_previous
WITH last_stage1 AS (
    SELECT params FROM lineage WHERE table_name = 'stage1_sft' ORDER BY created_at DESC LIMIT 1
),
settings AS (
    SELECT coalesce(getvariable('alpha')::DOUBLE, (SELECT (params->>'alpha')::DOUBLE FROM last_stage1), 0.5) AS alpha,
           CASE WHEN getvariable('model') IS NOT NULL THEN [getvariable('model')::VARCHAR]
                ELSE (SELECT from_json(params->'difficulty_model_ids', '["VARCHAR"]') FROM last_stage1) END AS model_ids
),
-- The pooled pass rate and the usable-sample rule are the views the splits use (sql/schema.sql).
pooled AS (
    SELECT problem_id, pass_rate FROM pass_rate_under((SELECT model_ids FROM settings))
),
-- One join of the generation-sized tables, grouped per problem (cheaper than two DISTINCTs).
per_problem AS (
    SELECT problem_id, bool_or(usable) AS has_verified
    FROM distillation_samples
    GROUP BY problem_id
),
flags AS (
    SELECT c.domain, c.source,
           p.pass_rate IS NOT NULL AS scored,
           coalesce(p.pass_rate < s.alpha, false) AS passed,
           pp.problem_id IS NOT NULL AS has_sample,
           coalesce(pp.has_verified, false) AS has_verified
    FROM clean_problems c
    CROSS JOIN settings s
    LEFT JOIN pooled p ON p.problem_id = c.problem_id
    LEFT JOIN per_problem pp ON pp.problem_id = c.problem_id
),
-- Steps 3-7 in one pass over the clean problems.
flag_counts AS (
    SELECT domain, source, count(*) AS clean,
           count(*) FILTER (WHERE scored) AS scored,
           count(*) FILTER (WHERE passed) AS passed,
           count(*) FILTER (WHERE passed AND has_sample) AS distilled,
           count(*) FILTER (WHERE passed AND has_verified) AS verified
    FROM flags GROUP BY ALL
),
counts AS (
    SELECT domain, source, 1 AS step, 'raw' AS stage, count(*) AS problems FROM raw_problems GROUP BY ALL
    UNION ALL SELECT domain, source, 2, 'unique', count(*) FROM unique_problems GROUP BY ALL
    UNION ALL SELECT domain, source, 3, 'clean', clean FROM flag_counts
    UNION ALL SELECT domain, source, 4, 'scored', scored FROM flag_counts
    UNION ALL SELECT domain, source, 5, 'passed_difficulty', passed FROM flag_counts
    UNION ALL SELECT domain, source, 6, 'distilled', distilled FROM flag_counts
    UNION ALL SELECT domain, source, 7, 'verified', verified FROM flag_counts
    UNION ALL SELECT domain, source, 8, 'stage1_sft', count(*) FROM stage1_sft GROUP BY ALL
    UNION ALL SELECT domain, source, 9, 'stage2_sft', count(*) FROM stage2_sft GROUP BY ALL
),
steps AS (
    SELECT * FROM (VALUES (1, 'raw'), (2, 'unique'), (3, 'clean'), (4, 'scored'), (5, 'passed_difficulty'),
                          (6, 'distilled'), (7, 'verified'), (8, 'stage1_sft'), (9, 'stage2_sft')) t(step, stage)
),
-- Every source gets every step, with 0 where nothing survived; a source's domain is the one
-- its raw rows have.
source_domains AS (
    SELECT source, min(domain) AS domain FROM counts WHERE step = 1 GROUP BY source
),
grid AS (
    SELECT coalesce(d.domain, 'math') AS domain, s.source, st.step, st.stage, coalesce(sum(c.problems), 0) AS problems
    FROM (SELECT DISTINCT source FROM counts) s
    CROSS JOIN steps st
    LEFT JOIN source_domains d ON d.source = s.source
    LEFT JOIN counts c ON c.source = s.source AND c.step = st.step
    GROUP BY ALL
    UNION ALL
    SELECT dm.domain, '(all ' || dm.domain || ')', st.step, st.stage, coalesce(sum(c.problems), 0)
    FROM (SELECT DISTINCT domain FROM counts) dm
    CROSS JOIN steps st
    LEFT JOIN counts c ON c.domain = dm.domain AND c.step = st.step
    GROUP BY ALL
    UNION ALL
    SELECT '(all)', '(all)', st.step, st.stage, coalesce(sum(c.problems), 0)
    FROM steps st LEFT JOIN counts c ON c.step = st.step
    GROUP BY st.step, st.stage
)
SELECT domain, source, step, stage, problems::BIGINT AS problems,
       round(100.0 * problems / nullif(first_value(problems) OVER w, 0), 2) AS pct_of_raw,
       round(100.0 * problems / nullif(lag(problems) OVER w, 0), 2) AS pct_of_previous
FROM grid
WINDOW w AS (PARTITION BY source ORDER BY step)
ORDER BY source = '(all)' DESC, starts_with(source, '(all ') DESC, source, step
