-- Histogram of teacher distillation lengths (tokens), by teacher model and verified correctness.
-- The data behind the length charts of the split and analysis assets.
--
-- @param model VARCHAR: only this teacher model (default: every model)
-- @param bins INTEGER: number of equal-width bins over [0, longest sample] (default 20)
--
-- Columns: model, correctness (correct | wrong | undecided | unverified), bin_start,
--   bin_end (tokens, half-open [bin_start, bin_end)), samples
WITH samples AS (
    SELECT d.model, d.n_tokens,
           CASE WHEN v.generation_id IS NULL THEN 'unverified'
                WHEN v.correct THEN 'correct'
                WHEN NOT v.correct THEN 'wrong'
                ELSE 'undecided' END AS correctness
    FROM distillations d
    LEFT JOIN verified_distillations v USING (generation_id)
    WHERE d.n_tokens IS NOT NULL
      AND (getvariable('model') IS NULL OR d.model = getvariable('model'))
),
width AS (
    SELECT greatest(1, ceil((max(n_tokens) + 1) / coalesce(getvariable('bins'), 20)))::BIGINT AS w FROM samples
)
SELECT model, correctness,
       (n_tokens // w) * w AS bin_start,
       (n_tokens // w + 1) * w AS bin_end,
       count(*) AS samples
FROM samples, width
GROUP BY ALL
ORDER BY model, correctness, bin_start
