-- What the teacher cost and what survived curation: per source, teacher model and difficulty
-- band, the distillation samples drawn, their tokens and dollars, how many were verified
-- correct, how many became SFT rows, and the dollars per kept stage-1 row. Every distillation
-- generation counts, failed ones and those of earlier parameters included: they were paid for.
-- A problem's band is its pooled pass rate under the difficulty model, in the band edges of
-- the latest stage1_sft run (the same labels as stage1_sft.difficulty_band); 'unscored' when
-- it has none. Source '(all)' / band '(all)' is the teacher's total.
-- Dollars come from generations.cost_usd (models.<role>.pricing); priced_samples < samples
-- means part of the spend is unknown (no pricing, or no usage reported).
--
-- @param model VARCHAR: only this teacher model (default: every model)
--
-- Columns: source, teacher_model, difficulty_band, samples, failed_samples, prompt_tokens,
--   completion_tokens, reasoning_tokens, priced_samples, cost_usd, verified_samples,
--   stage1_rows, stage2_rows, usd_per_verified_sample, usd_per_kept_row
WITH last_stage1 AS (
    SELECT params FROM lineage WHERE table_name = 'stage1_sft' ORDER BY created_at DESC LIMIT 1
),
settings AS (
    SELECT coalesce((SELECT from_json(params->'band_edges', '["DOUBLE"]') FROM last_stage1),
                    [0.0, 0.25, 0.5, 0.75, 1.0]) AS edges,
           (SELECT from_json(params->'difficulty_model_ids', '["VARCHAR"]') FROM last_stage1) AS model_ids
),
pooled AS (
    SELECT problem_id, sum(n_correct)::DOUBLE / sum(k) AS pass_rate
    FROM pass_rates, settings
    WHERE reference_status = 'ok' AND pass_rate IS NOT NULL AND k > 0
      AND (settings.model_ids IS NULL OR list_contains(settings.model_ids, model))
    GROUP BY problem_id
),
-- Band i of m-1 holds edges[i] <= p < edges[i+1]; the last band is closed.
banded AS (
    SELECT problem_id,
           1 + len(list_filter(edges[2:len(edges) - 1], lambda b: b <= pass_rate)) AS i, edges
    FROM pooled, settings
),
bands AS (
    SELECT problem_id,
           '[' || printf('%g', edges[i]) || ',' || printf('%g', edges[i + 1])
               || CASE WHEN i = len(edges) - 1 THEN ']' ELSE ')' END AS difficulty_band
    FROM banded
),
per_sample AS (
    SELECT coalesce(c.source, '(unknown)') AS source, g.model AS teacher_model,
           coalesce(b.difficulty_band, 'unscored') AS difficulty_band,
           g.error IS NOT NULL AS failed, g.n_prompt_tokens, g.n_tokens, g.n_reasoning_tokens, g.cost_usd,
           coalesce(v.correct, false) AS verified,
           s1.generation_id IS NOT NULL AS in_stage1,
           s2.generation_id IS NOT NULL AS in_stage2
    FROM generations g
    LEFT JOIN clean_problems c ON c.problem_id = g.problem_id
    LEFT JOIN bands b ON b.problem_id = g.problem_id
    LEFT JOIN verified_distillations v ON v.generation_id = g.generation_id
    LEFT JOIN stage1_sft s1 ON s1.generation_id = g.generation_id
    LEFT JOIN stage2_sft s2 ON s2.generation_id = g.generation_id
    WHERE g.purpose = 'distillation' AND (getvariable('model') IS NULL OR g.model = getvariable('model'))
),
grouped AS (
    SELECT coalesce(source, '(all)') AS source, teacher_model, coalesce(difficulty_band, '(all)') AS difficulty_band,
           count(*) AS samples,
           count(*) FILTER (WHERE failed) AS failed_samples,
           sum(n_prompt_tokens)::BIGINT AS prompt_tokens,
           sum(n_tokens)::BIGINT AS completion_tokens,
           sum(n_reasoning_tokens)::BIGINT AS reasoning_tokens,
           count(cost_usd) AS priced_samples,
           sum(cost_usd) AS cost_usd,
           count(*) FILTER (WHERE verified) AS verified_samples,
           count(*) FILTER (WHERE in_stage1) AS stage1_rows,
           count(*) FILTER (WHERE in_stage2) AS stage2_rows
    FROM per_sample
    GROUP BY GROUPING SETS ((source, teacher_model, difficulty_band), (teacher_model))
)
SELECT source, teacher_model, difficulty_band, samples, failed_samples, prompt_tokens, completion_tokens,
       reasoning_tokens, priced_samples, round(cost_usd, 6) AS cost_usd, verified_samples, stage1_rows, stage2_rows,
       round(cost_usd / nullif(verified_samples, 0), 6) AS usd_per_verified_sample,
       round(cost_usd / nullif(stage1_rows, 0), 6) AS usd_per_kept_row
FROM grouped
ORDER BY teacher_model, source = '(all)' DESC, source, difficulty_band
